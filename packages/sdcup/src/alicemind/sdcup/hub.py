"""The released SDCUP checkpoints (SDCUP README / models-language.md §5.4): pickled UER state dicts."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

_OSS = "http://alice-open.oss-cn-zhangjiakou.aliyuncs.com/SDCUP"

RELEASES = [
    CheckpointEntry(
        name=f"sdcup.ch.{size}",
        family="sdcup",
        url=f"{_OSS}/sdcup_{size}_model.bin-{step}",
        filename=f"sdcup_{size}_model.bin-{step}",
        format="uer-torch",
        description=f"SDCUP {size}, Chinese ({params}); UER BERT state dict (google_zh_vocab.txt, 21128 tokens).",
        config={"preset": f"sdcup.{size}"},
        license="Apache-2.0",
    )
    for size, step, params in (("base", 50000, "119M"), ("large", 60000, "349M"))
]

for _entry in RELEASES:
    register_checkpoint(_entry)  # registering the same entry again is a no-op
