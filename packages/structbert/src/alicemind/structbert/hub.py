"""The released StructBERT checkpoints (facts from the original README and sofa)."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

_OSS = "https://alice-open.oss-cn-zhangjiakou.aliyuncs.com/StructBERT"

RELEASES = [
    CheckpointEntry(
        name="structbert.en.large",
        family="structbert",
        url=f"{_OSS}/en_model",
        filename="en_model",
        format="structbert-release",
        description="StructBERT large, English, uncased WordPiece 30522 (340M). Original PyTorch state dict.",
        config={"preset": "structbert.en.large"},
        license="Apache-2.0",
    ),
    CheckpointEntry(
        name="structbert.ch.large",
        family="structbert",
        url=f"{_OSS}/ch_model",
        filename="ch_model",
        format="structbert-release",
        description="StructBERT large, Chinese, WordPiece 21128 with [SLR]/[BYR] (330M). Original state dict.",
        config={"preset": "structbert.ch.large"},
        license="Apache-2.0",
    ),
    CheckpointEntry(
        name="sofa.structbert.en.large",
        family="structbert",
        url=f"{_OSS}/english_sbert-large-std-512.tar.gz",
        filename="english_sbert-large-std-512.tar.gz",
        format="sofa",
        description="StructBERT large, English, as the sofa toolkit ships it (Hugging Face layout, model_type sbert).",
        license="Apache-2.0",
        archive=True,
    ),
    CheckpointEntry(
        name="sofa.structbert.ch.large",
        family="structbert",
        url=f"{_OSS}/chinese_sbert-large-std-512.tar.gz",
        filename="chinese_sbert-large-std-512.tar.gz",
        format="sofa",
        description="StructBERT large, Chinese, as the sofa toolkit ships it (Hugging Face layout, model_type sbert).",
        license="Apache-2.0",
        archive=True,
    ),
]


for _entry in RELEASES:
    register_checkpoint(_entry)  # registering the same entry again is a no-op
