"""The released PALM checkpoints (reference models-language.md section 2.6)."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

EN_DRIVE_ID = "1mSp-4KfBwGKUAdWiW-ctOR9Qgi0a-w9B"
EN_DRIVE_URL = f"https://drive.google.com/file/d/{EN_DRIVE_ID}/view"

RELEASES = [
    CheckpointEntry(
        name="palm.ch.base",
        family="palm",
        url="https://alice-open.oss-cn-zhangjiakou.aliyuncs.com/PALM/chinese-palm-base.tar.gz",
        filename="chinese-palm-base.tar.gz",
        format="sofa-dir-tar",
        description="Chinese PALM base (12+12 layers, 217M): sofa folder with config.json, palm_model.pt, vocab.txt.",
        config={"preset": "palm.ch.base"},
        license="Apache-2.0",
        archive=True,
    ),
    CheckpointEntry(
        name="palm.en.base",
        family="palm",
        # Google Drive serves files this large only after an interactive virus-scan confirmation page, so there is
        # no stable direct URL: fetch_checkpoint explains where to put the file by hand.
        url=None,
        filename="palm_model_and_data.tar.gz",
        format="palm-en-pickle",
        description=(
            f"English PALM base (RoBERTa-base encoder + 12-layer decoder, 257M). Google Drive file {EN_DRIVE_ID} is "
            f"not directly downloadable: open {EN_DRIVE_URL} in a browser, save palm_model_and_data.tar.gz"
        ),
        config={"preset": "palm.en.base"},
        license="Apache-2.0",
        archive=True,
    ),
]


for _entry in RELEASES:
    register_checkpoint(_entry)  # registering the same entry again is a no-op
