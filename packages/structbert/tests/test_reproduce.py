"""``alicemind structbert reproduce``: every task of a published table, N seeds, report beside the paper's numbers."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest
from structbert_tasks import tiny_checkpoint, write_task

from alicemind.core.cli import load_recipe, main


def test_tables_carry_the_published_numbers():
    en = load_recipe("structbert", "reproduce-structbert-en")
    assert {t["name"]: t["published"] for t in en["tasks"]} == {
        "MNLI": 86.86, "QNLIv2": 93.04, "QQP": 91.67, "SST-2": 93.23, "MRPC": 86.51,
    }  # fmt: skip
    ch = load_recipe("structbert", "reproduce-structbert-ch")
    assert {t["name"]: t["published"] for t in ch["tasks"]} == {"CMNLI": 84.47, "OCNLI": 81.28, "TNEWS": 68.67,
                                                                "AFQMC": 76.11}  # fmt: skip
    for table in (en, ch):
        for task in table["tasks"]:
            assert load_recipe("structbert", task["recipe"])["task"]  # every recipe named exists


@pytest.mark.slow
def test_reproduce_runs_every_task_over_seeds_and_reports(tmp_path, capsys):
    data = tmp_path / "glue"
    for task in ("mnli", "qnli", "qqp", "sst-2", "mrpc"):
        write_task(data, task)
    ckpt = tiny_checkpoint(tmp_path / "m")
    out = tmp_path / "report"
    overrides = ["training.max_steps=2", "training.num_epochs=null", "training.per_device_batch_size=4"]
    argv = ["structbert", "reproduce", "reproduce-structbert-en", *overrides, "--checkpoint", str(ckpt),
            "--data-dir", str(data), "--seeds", "2", "--output", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())["rows"]
    assert [r["name"] for r in results] == ["MNLI", "QNLIv2", "QQP", "SST-2", "MRPC"]
    report = (out / "report.md").read_text()
    for row in results:
        assert len(row["scores"]) == 2
        # The score is the run's own dev accuracy, in percent.
        run = json.loads((out / row["name"] / "seed-43" / "eval_results.json").read_text())["metrics"]
        assert row["scores"][1] == pytest.approx(100 * next(iter(run.values()))["accuracy"])
        mean, std = np.mean(row["scores"]), np.std(row["scores"], ddof=1)
        assert f"| {row['name']} | accuracy | {row['published']:.2f} |" in report
        assert f"{mean:.2f} ± {std:.2f}" in report
    with (out / "learning_curves.csv").open() as f:
        curve = list(csv.DictReader(f))
    assert {r["run"] for r in curve} == {f"{n} seed {s}" for n in ("MNLI", "QNLIv2", "QQP", "SST-2", "MRPC")
                                         for s in (42, 43)}  # fmt: skip
    has_png = (out / "learning_curves.png").is_file()
    assert has_png == (importlib.util.find_spec("matplotlib") is not None)
    assert ("learning_curves.png" in report) == has_png
    if has_png:  # the [plots] extra (installed by the test extra) draws a real image
        assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reproduce_errors(tmp_path, capsys):
    assert main(["structbert", "reproduce", "glue-rte", "--checkpoint", str(tmp_path), "--data-dir", "x"]) == 2
    assert "not a results table" in capsys.readouterr().err
    assert main(["structbert", "reproduce", "reproduce-structbert-en", "--checkpoint", str(tmp_path / "nope"),
                 "--data-dir", "x"]) == 2  # fmt: skip
    assert "checkpoint" in capsys.readouterr().err
