"""``alicemind structbert demo``: the shipped data, and the --quick run end to end."""

from __future__ import annotations

import collections
import json

import pytest

from alicemind.core.cli import main
from alicemind.core.data import load_task_examples
from alicemind.structbert.demo import demo_corpus_path, demo_task_dir, generate_demo_corpus


def test_shipped_corpus_is_the_generators_output_and_small():
    text = demo_corpus_path().read_text(encoding="utf-8")
    assert text == generate_demo_corpus()  # regenerable: the file is exactly what the code writes
    assert len(text.encode()) < 1_000_000
    docs = text.strip().split("\n\n")
    assert len(docs) == 400 and all(5 <= len(d.splitlines()) <= 8 for d in docs)


def test_demo_task_is_balanced_and_disjoint_from_the_corpus():
    train = load_task_examples("demo-topics", demo_task_dir(), "train")
    dev = load_task_examples("demo-topics", demo_task_dir(), "dev")
    assert len(train) == 32 and len(dev) == 48
    assert collections.Counter(e.label for e in train) == {"cooking": 8, "garden": 8, "football": 8, "computers": 8}
    corpus = demo_corpus_path().read_text(encoding="utf-8").lower()
    assert not any(e.text_a.lower() in corpus for e in train + dev)
    assert not {e.text_a for e in train} & {e.text_a for e in dev}


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["structbert", "demo", "--quick", "--no-progress", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "held-out SSO accuracy (chance 0.333)" in out and "pre-trained StructBERT" in out
    held_out = json.loads((tmp_path / "pretrain" / "held_out.json").read_text())
    assert held_out["final"]["mlm_loss"] < held_out["initial"]["mlm_loss"]
    for run in ("pre-trained", "scratch"):
        metrics = json.loads((tmp_path / run / "eval_results.json").read_text())["metrics"]["demo-topics"]
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert f"{metrics['accuracy']:.3f}" in out
