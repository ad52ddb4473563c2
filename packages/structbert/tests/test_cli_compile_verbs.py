"""``structbert evaluate`` and ``predict`` with ``--compile`` (a tracing-only backend, so the test stays cheap) write
exactly what they write without it, for a classifier and a tagger; the compiled model saw bucketed widths."""

from __future__ import annotations

import json

import pytest
import torch

from alicemind.core.cli import main
from alicemind.structbert.pretraining import train_wordpiece_vocab

TINY = ["scratch_config=structbert.tiny", "training.precision=fp32", "training.log_every=1000",
        "training.max_steps=2", "training.num_epochs=null", "training.per_device_batch_size=4",
        "model_config={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}"]  # fmt: skip
COMPILE = ["--compile", "--compile-backend", "aot_eager"]
SENTENCES = ["the cat sat on the mat", "anna lives in rome", "ben", "the dog ran up the big red hill today"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    words = " ".join(SENTENCES).split() + ["paris", "visited"]
    return train_wordpiece_vocab([words], 120, tmp_path_factory.mktemp("vocab") / "vocab.txt")


def _finetune(recipe, data, vocab, out):
    argv = ["structbert", "finetune", "--no-progress", "--recipe", recipe, f"data_dir={data}", f"tokenizer={vocab}",
            f"output_dir={out}", *TINY]  # fmt: skip
    assert main(argv) == 0
    return out / "model"


def _both(argv_for, tmp_path, capsys):
    """Run a verb eagerly then with --compile; return both outputs and the compiled run's stderr."""
    outputs = []
    for extra in ([], COMPILE):
        out = tmp_path / f"out{len(extra)}"
        capsys.readouterr()
        assert main([*argv_for(out), *extra]) == 0
        outputs.append(out.read_text())
    return outputs, capsys.readouterr().err


def test_classifier_evaluate_and_predict_match_eager(vocab, tmp_path, capsys):
    rows = [(s, "pos" if i % 2 else "neg") for i, s in enumerate(SENTENCES)] * 2
    for split in ("train", "dev"):
        (tmp_path / f"{split}.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    model = _finetune("classify", tmp_path, vocab, tmp_path / "run")
    dev = str(tmp_path / "dev.tsv")
    (evaluated, compiled), err = _both(
        lambda out: ["structbert", "evaluate", "--model", str(model), "--input", dev, "--output", str(out)],
        tmp_path, capsys)  # fmt: skip
    assert json.loads(evaluated)["metrics"] == json.loads(compiled)["metrics"]
    assert "compiled forward for a new input shape" in err
    (eager, compiled), err = _both(
        lambda out: ["structbert", "predict", "--model", str(model), "--input", dev, "--output", str(out)],
        tmp_path, capsys)  # fmt: skip
    assert eager == compiled and len(eager.splitlines()) == len(rows)
    assert "compiled forward for a new input shape" in err


def test_tagger_predict_matches_eager(vocab, tmp_path, capsys):
    tags = {"anna": "B-PER", "ben": "B-PER", "rome": "B-LOC"}
    text = "\n\n".join("\n".join(f"{w}\t{tags.get(w, 'O')}" for w in s.split()) for s in SENTENCES) + "\n"
    for split in ("train", "dev"):
        (tmp_path / f"{split}.conll").write_text(text)
    model = _finetune("tag", tmp_path, vocab, tmp_path / "run")
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n")
    (eager, compiled), err = _both(
        lambda out: ["structbert", "predict", "--model", str(model), "--input", str(tmp_path / "in.txt"),
                     "--output", str(out)], tmp_path, capsys)  # fmt: skip
    assert eager == compiled and len(eager.splitlines()) == len(SENTENCES)
    assert "compiled forward for a new input shape" in err


def test_help_explains_compile_and_a_bad_backend_is_refused(capsys, monkeypatch):
    assert main(["structbert", "predict", "--help"]) == 0
    assert "--compile-backend" in capsys.readouterr().out
    assert main(["structbert", "evaluate", "--model", "m", "--compile-backend", "nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    monkeypatch.setenv("ALICEMIND_COMPILE_BACKEND", "nope")
    assert main(["structbert", "evaluate", "--model", "m", "--input", "x.tsv", "--compile"]) == 2
    err = capsys.readouterr().err
    assert "ALICEMIND_COMPILE_BACKEND='nope' is not a compile backend" in err and len(err.splitlines()) == 1
