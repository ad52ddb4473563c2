"""``alicemind mplug reproduce``: the README tables with our parameter counts and our runs' metrics beside them."""

from __future__ import annotations

import json

import pytest

from alicemind.core.cli import CliError, main
from alicemind.mplug.reproduce import count_parameters
from alicemind.mplug.runner import write_metrics


def test_our_parameter_counts_match_the_readme_sizes():
    # Built on the meta device from the presets. README: base 350M (ours 347.0M: the modules that run, as the
    # README counts them); large "600M" is a round figure (ours 565.3M, ViT-L/14 alone is 304M of it).
    assert abs(count_parameters("mplug.en.base") / 350e6 - 1) < 0.02
    assert abs(count_parameters("mplug.en.large") / 600e6 - 1) < 0.07
    assert count_parameters("mplug.en.large.v2") == count_parameters("mplug.en.large")


def test_results_table_puts_our_runs_beside_the_readme(tmp_path, capsys):
    caption = {"task": "caption", "eval_file": str(tmp_path / "coco_test.json")}
    write_metrics(tmp_path / "cap", caption, "caption", {"CIDEr": 0.75, "BLEU-4": 0.5}, "coco-caption", overwrite=False)
    retrieval = {"task": "retrieval", "eval_file": "flickr_test.json"}
    write_metrics(tmp_path / "ret", retrieval, "retrieval", {"txt_r1": 0.5, "img_r1": 0.25}, "retrieval-flickr",
                  overwrite=False)  # fmt: skip
    write_metrics(tmp_path / "own", {"task": "vqa"}, "vqa", {"vqa_accuracy": 0.5}, "my-recipe", overwrite=False)
    assert main(["mplug", "reproduce", "--runs", str(tmp_path), "--output", str(tmp_path / "table.md")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "table.md").read_text() == out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    ce = next(r for r in rows if "Karpathy test, CE" in r)
    assert "| 137.5 | 141.0 | 142.3 | 75.00 (coco_test.json;" in ce
    assert "| not run |" in next(r for r in rows if "CIDEr-opt" in r)
    assert "50.00 / 25.00 (flickr_test.json;" in next(r for r in rows if "Flickr30K" in r)
    assert "no released code" in next(r for r in rows if "SNLI-VE" in r)
    assert any("my-recipe" in r and json.dumps({"vqa_accuracy": 0.5}) in r for r in rows)
    assert "| mplug.en.base | ViT-B/16 | 6 | 6 | 12 | 350M |" in out


def test_reproduce_errors_are_one_line(tmp_path, capsys):
    assert main(["mplug", "reproduce", "--table", "results", "--runs", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    (tmp_path / "t.md").write_text("keep")
    assert main(["mplug", "reproduce", "--table", "results", "--output", str(tmp_path / "t.md")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (tmp_path / "t.md").read_text() == "keep"
    write_metrics(tmp_path / "r", {"task": "vqa"}, "vqa", {"vqa_accuracy": 1.0}, "vqa", overwrite=False)
    with pytest.raises(CliError, match="already holds an evaluation"):
        write_metrics(tmp_path / "r", {"task": "vqa"}, "vqa", {"vqa_accuracy": 0.0}, "vqa", overwrite=False)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"] == {"vqa_accuracy": 1.0}
