"""The released StructuralLM checkpoint (README of alibaba/AliceMind StructuralLM): one TF1 tarball."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

RELEASES = [
    CheckpointEntry(
        name="structurallm.en.large",
        family="structurallm",
        url="https://alice-open.oss-cn-zhangjiakou.aliyuncs.com/StructuralLM/model/structural_lm_models.tar.gz",
        filename="structural_lm_models.tar.gz",
        format="structurallm-tf1",
        description="StructuralLM large, English (340M; RoBERTa-large sized, 24 layers, H 1024); TF1 checkpoint "
        "structural_lm_models/model.ckpt-160000. The tokenizer is RoBERTa's (vocab.json + merges.txt).",
        config={"preset": "structurallm.en.large"},
        license="Apache-2.0",
        archive=True,
    )
]

for _entry in RELEASES:
    register_checkpoint(_entry)  # registering the same entry again is a no-op
