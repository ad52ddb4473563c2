"""The released StructVBERT checkpoint (README of alibaba/AliceMind StructVBERT)."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

RELEASES = [
    CheckpointEntry(
        name="structvbert.en.base",
        family="structvbert",
        url="http://alice-open.oss-cn-zhangjiakou.aliyuncs.com/pretrained_model.tar.gz",
        filename="pretrained_model.tar.gz",
        format="structvbert-release",
        description="StructVBERT base, English (110M; BERT-base uncased one-stream): pretrained_model/ with "
        "pytorch_model.bin, bert_config.json, vocab.txt. No sha256 is published.",
        config={"preset": "structvbert.en.base"},
        license="Apache-2.0",
        archive=True,
    )
]

for _entry in RELEASES:
    register_checkpoint(_entry)  # registering the same entry again is a no-op
