"""The released LatticeBERT checkpoints (README of alibaba/AliceMind LatticeBERT): TF1 tarballs."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

_OSS = "https://alice-open.oss-cn-zhangjiakou.aliyuncs.com/LatticeBERT"
_SIZES = {
    "tiny": "E 128, H 256, 4 layers, 4 heads",
    "lite": "E 128, H 512, 6 layers, 8 heads",
    "base": "E 128, H 768, 12 layers, 12 heads",
}

RELEASES = [
    CheckpointEntry(
        name=f"latticebert.{size}",
        family="latticebert",
        url=f"{_OSS}/chinese_labert-{size}-std-512.tar.gz",
        filename=f"chinese_labert-{size}-std-512.tar.gz",
        format="latticebert-tf1",
        description=f"LatticeBERT {size}, Chinese ({shape}); TF1 checkpoint + labert_config.json, vocab.txt, "
        "lexicon.txt (named: surface<TAB>cluster).",
        config={"preset": f"latticebert.{size}"},
        license="Apache-2.0",
        archive=True,
    )
    for size, shape in _SIZES.items()
]

for _entry in RELEASES:
    register_checkpoint(_entry)  # registering the same entry again is a no-op
