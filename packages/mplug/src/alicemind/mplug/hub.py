"""The released mPLUG checkpoints (README of alibaba/AliceMind mPLUG) and the CLIP towers they start from."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

_OSS = "https://alice-open.oss-cn-zhangjiakou.aliyuncs.com/mPLUG"
_MODELS = {
    "mplug.en.base": ("mplug_base.pth", "ViT-B/16, 6 text + 6 fusion (stride 3) + 12 decoder layers, 350M"),
    "mplug.en.large": ("mplug_large.pth", "ViT-L/14, 6 text + 6 fusion + 12 decoder layers, 600M"),
    "mplug.en.large.v2": ("mplug_large_v2.pth", "large with continued pre-training on 4M pairs (VQA, caption)"),
}

RELEASES = [
    CheckpointEntry(
        name=name,
        family="mplug",
        url=f"{_OSS}/{filename}",
        filename=filename,
        format="mplug-pth",
        description=f"mPLUG {what}; torch.save({{'model': ...}}), read with the sealed unpickler.",
        config={"preset": name},
        license="Apache-2.0",
    )
    for name, (filename, what) in _MODELS.items()
] + [
    CheckpointEntry(
        name=f"clip.{tower}",
        family="mplug",
        url=f"{_OSS}/{tower}.tar",
        filename=f"{tower}.tar",
        format="clip-torchscript",
        description=f"OpenAI CLIP {tower} TorchScript archive; tensors read without running its code.",
        config={},
        license="MIT",
    )
    for tower in ("ViT-B-16", "ViT-L-14")
]

for _entry in RELEASES:
    register_checkpoint(_entry)
