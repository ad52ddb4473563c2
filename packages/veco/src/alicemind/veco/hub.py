"""The released VECO checkpoints (reference models-language.md section 3.4)."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

BASE_URL = "https://alice-open.oss-cn-zhangjiakou.aliyuncs.com/VECO"

RELEASES = [
    CheckpointEntry(
        name="veco.large",
        family="veco",
        url=f"{BASE_URL}/NLU/model/xtreme-released-veco.tar.gz",
        filename="xtreme-released-veco.tar.gz",
        format="xtreme-released-veco",
        description="VECO large NLU (24 layers, 550M): XLM-R folder xtreme-released-veco/ (config.json, "
        "pytorch_model.bin, sentencepiece.bpe.model).",
        config={"preset": "veco.large"},
        license="Apache-2.0",
        archive=True,
    ),
    CheckpointEntry(
        name="veco.large.nlg",
        family="veco",
        url=f"{BASE_URL}/NLG/model/veco-large.tar.gz",
        filename="veco-large.tar.gz",
        format="fairseq-veco",
        description="VECO large NLG (24 encoder + 24 decoder layers, 660M; 6 kept for fine-tuning): fairseq folder "
        "saved_model/veco-large/ (model.pt, dict.txt, sentencepiece.bpe.model).",
        config={"preset": "veco.large.nlg"},
        license="Apache-2.0",
        archive=True,
    ),
]

for _entry in RELEASES:
    register_checkpoint(_entry)  # registering the same entry again is a no-op
