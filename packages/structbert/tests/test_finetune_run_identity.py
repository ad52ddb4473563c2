"""A fine-tuning rerun into a used output folder resumes only the same run: other training data stops it."""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

from alicemind.core.cli import main
from alicemind.structbert.pretraining import train_wordpiece_vocab

TOPICS = Path(str(importlib.resources.files("alicemind.structbert") / "data" / "examples" / "topics"))
TINY = ["scratch_config=structbert.tiny", "training.precision=fp32", "training.max_steps=2", "training.num_epochs=null",
        "training.per_device_batch_size=8", "training.save_every=1"]  # fmt: skip


def test_finetune_on_changed_data_into_used_folder_exits_2_naming_the_file(tmp_path, capsys):
    data = tmp_path / "topics"
    shutil.copytree(TOPICS, data)
    texts = [line.split("\t")[0] for line in (data / "train.tsv").read_text().splitlines()[1:]]
    vocab = train_wordpiece_vocab([texts], 300, tmp_path / "vocab.txt")
    out = tmp_path / "run"
    argv = ["structbert", "finetune", "--no-progress", "--recipe", "classify", f"data_dir={data}",
            f"tokenizer={vocab}", f"output_dir={out}", *TINY]  # fmt: skip
    assert main(argv) == 0
    assert main(argv) == 0  # the same run: resumes its last checkpoint (nothing left to train)
    assert "resuming run from checkpoint-2" in capsys.readouterr().err

    # Same size, same labels, other content: only the content hash can tell.
    rows = (data / "train.tsv").read_text().splitlines()
    (data / "train.tsv").write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "own-classify.train fingerprint differs" in err[0] and "--overwrite" in err[0]
    assert main([*argv, "--overwrite"]) == 0
    assert "--overwrite: starting a new run" in capsys.readouterr().err
