"""The released PLUG checkpoint (reference models-language.md section 4.4)."""

from __future__ import annotations

from alicemind.core.hub import CheckpointEntry, register_checkpoint

PORTAL_URL = "https://www.alice-mind.com/portal"

RELEASES = [
    CheckpointEntry(
        name="plug.27b",
        family="plug",
        # The release is behind an application form: there is no direct URL. fetch_checkpoint explains the manual
        # step; `alicemind plug convert plug_model/ OUT` then reads the folder.
        url=None,
        filename="plug_model.tar.gz",
        format="megatron-mp8",
        description=(
            "PLUG 27B (24+6 layers, hidden 8192; ~55 GB fp16): plug_model/ with config.json, vocab.txt and "
            f"28000/mp_rank_00..07_model_states.pt. Apply for it at {PORTAL_URL}, then convert the folder"
        ),
        config={"preset": "plug.27b"},
        license="Apache-2.0",
        archive=True,
    ),
]

for _entry in RELEASES:
    register_checkpoint(_entry)
