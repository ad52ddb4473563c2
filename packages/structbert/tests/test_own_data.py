"""Fine-tune, evaluate and predict on your own files from the CLI (generic recipes classify, regress, tag, qa).

Models are tiny and random (``scratch_config=structbert.tiny``) with a WordPiece vocabulary learnt from the data,
so every run takes seconds on a CPU.
"""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alicemind.core.cli import main
from alicemind.structbert import StructBertForSequenceClassification
from alicemind.structbert.pretraining import train_wordpiece_vocab
from alicemind.structbert.tokenization import StructBertTokenizer

TOPICS = Path(str(importlib.resources.files("alicemind.structbert") / "data" / "examples" / "topics"))
TINY = ["scratch_config=structbert.tiny", "training.precision=fp32", "training.log_every=1000",
        "model_config={hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0}"]  # fmt: skip
SHORT = ["training.max_steps=4", "training.num_epochs=null", "training.per_device_batch_size=4", "training.lr=1e-3"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``alicemind ...`` in a fresh Python process: nothing registered or cached in this one can help it."""
    cmd = [sys.executable, "-m", "alicemind.core.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory) -> Path:
    texts = [line.split("\t")[0] for line in (TOPICS / "train.tsv").read_text().splitlines()[1:]]
    words = "anna ben rome paris berlin lives visited who wrote the lyrics in one night singer sat cat".split()
    return train_wordpiece_vocab([texts, words], 400, tmp_path_factory.mktemp("vocab") / "vocab.txt")


@pytest.fixture(scope="module")
def topics_run(vocab, tmp_path_factory):
    out = tmp_path_factory.mktemp("topics") / "run"
    argv = ["structbert", "finetune", "--no-progress", "--recipe", "classify", f"data_dir={TOPICS}", f"tokenizer={vocab}",
            f"output_dir={out}", *TINY, "training.num_epochs=15", "training.per_device_batch_size=8",
            "training.lr=1e-3"]  # fmt: skip
    assert main(argv) == 0
    return out / "model", json.loads((out / "eval_results.json").read_text())["metrics"]["own-classify"]


def test_shipped_topics_file_fine_tunes_and_folder_alone_evaluates_and_predicts(topics_run, tmp_path):
    model_dir, in_process = topics_run
    labels = sorted({line.split("\t")[1] for line in (TOPICS / "train.tsv").read_text().splitlines()[1:]})
    assert len(labels) == 6 and in_process["accuracy"] > 1 / 6  # better than chance on the 24 dev sentences
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(labels)}
    assert config["label2id"] == {label: i for i, label in enumerate(labels)} and config["num_labels"] == 6
    assert config["task_specs"][0]["labels"] == labels and config["task_num_labels"] is None

    # A fresh process, the folder and the data only: the same accuracy.
    proc = _cli("structbert", "evaluate", "--model", str(model_dir), "--data-dir", str(TOPICS), "--output",
                str(tmp_path / "eval.json"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fresh = json.loads((tmp_path / "eval.json").read_text())["metrics"]["own-classify"]
    assert fresh["accuracy"] == pytest.approx(in_process["accuracy"], abs=1e-12)
    predicted = [
        line.split("\t")[1] for line in (tmp_path / "predictions_own-classify_dev.tsv").read_text().splitlines()[1:]
    ]

    # predict streams stdin to stdout (headerless sentences), batched; labels follow the saved order.
    sentences = [line.split("\t")[0] for line in (TOPICS / "dev.tsv").read_text().splitlines()[1:]]
    cmd = [sys.executable, "-m", "alicemind.core.cli", "structbert", "predict", "--model", str(model_dir), "--input", "-",
           "--output", "-", "--batch-size", "5"]  # fmt: skip
    proc = subprocess.run(cmd, input="\n".join(sentences) + "\n", capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["label"] for r in rows] == predicted and len(rows) == 24
    assert all(list(r["probs"]) == labels and abs(sum(r["probs"].values()) - 1) < 1e-4 for r in rows)
    assert all(r["label"] == max(r["probs"], key=r["probs"].get) for r in rows)
    # The same from a file with its header, to a file.
    assert main(["structbert", "predict", "--model", str(model_dir), "--input", str(TOPICS / "dev.tsv"),
                 "--output", str(tmp_path / "p.jsonl")]) == 0  # fmt: skip
    assert [json.loads(line)["label"] for line in (tmp_path / "p.jsonl").read_text().splitlines()] == predicted


def test_transformers_reads_our_single_task_head(topics_run):
    transformers = pytest.importorskip("transformers")
    model_dir, _ = topics_run
    ours = StructBertForSequenceClassification.from_pretrained(model_dir).eval()
    theirs = transformers.BertForSequenceClassification.from_pretrained(model_dir).eval()
    assert theirs.config.id2label[3] == ours.config.id2label["3"] and theirs.num_labels == 6
    batch = StructBertTokenizer.from_pretrained(model_dir)(["The band played a song.", "Vote today"], padding=True,
                                                            return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        expected = ours(**batch).logits
        got = theirs(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def _finetune(recipe: str, data: Path, vocab: Path, out: Path, *extra: str) -> dict:
    argv = ["structbert", "finetune", "--no-progress", "--recipe", recipe, f"data_dir={data}", f"tokenizer={vocab}",
            f"output_dir={out}", *TINY, *SHORT, *extra]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "eval_results.json").read_text())["metrics"]


def test_pair_classification_csv_with_given_label_order(vocab, tmp_path):
    rows = [("the cat sat", "a cat sat", "same"), ("anna lives in rome", "ben visited paris", "different")] * 4
    text = "first,second,gold\n" + "".join(f'"{a}","{b}",{y}\n' for a, b, y in rows)
    (tmp_path / "train.csv").write_text(text)
    (tmp_path / "dev.csv").write_text(text)
    cols = ["columns.text_a=first", "columns.text_b=second", "columns.label=gold", "labels=[same, different]"]
    metrics = _finetune("classify", tmp_path, vocab, tmp_path / "run", *cols)["own-classify"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "same", "1": "different"}
    assert config["task_specs"][0]["columns"]["text_b"] == "second"
    assert main(["structbert", "predict", "--model", str(tmp_path / "run" / "model"), "--input",
                 str(tmp_path / "dev.csv"), "--output", str(tmp_path / "p.jsonl")]) == 0  # fmt: skip
    preds = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(preds) == 8 and all(list(p["probs"]) == ["same", "different"] for p in preds)


def test_regression_jsonl(vocab, tmp_path):
    rows = [{"text": t, "score": s} for t, s in [("the cat sat", 0.5), ("anna wrote lyrics", 3.0), ("rome", 1.5)] * 3]
    for split in ("train", "dev"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = _finetune("regress", tmp_path, vocab, tmp_path / "run")["own-regress"]
    assert set(metrics) == {"pearson", "spearman", "score"} and -1 <= metrics["pearson"] <= 1
    model_dir = tmp_path / "run" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["num_labels"] == 1 and config["id2label"] is None and config["task_specs"][0]["kind"] == "regress"
    assert main(["structbert", "predict", "--model", str(model_dir), "--input", str(tmp_path / "dev.jsonl"),
                 "--output", str(tmp_path / "p.jsonl")]) == 0  # fmt: skip
    values = [json.loads(line)["value"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(values) == 9 and values[0] == pytest.approx(values[3]) and np.isfinite(values).all()


def test_token_tagging_conll(vocab, tmp_path):
    sentences = [("anna lives in paris", "B-PER O O B-LOC"), ("ben visited rome", "B-PER O B-LOC"),
                 ("the cat sat", "O O O")]  # fmt: skip
    text = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(s.split(), g.split())) for s, g in sentences) + "\n"
    (tmp_path / "train.conll").write_text("-DOCSTART- O\n\n" + text * 4)
    (tmp_path / "dev.conll").write_text(text)
    extra = ["training.max_steps=40", "training.lr=3e-3"]
    metrics = _finetune("tag", tmp_path, vocab, tmp_path / "run", *extra)["own-tag"]
    assert metrics["f1"] == pytest.approx(1.0) and metrics["accuracy"] == pytest.approx(1.0)  # learnt the 3 lines
    model_dir = tmp_path / "run" / "model"
    assert json.loads((model_dir / "config.json").read_text())["id2label"] == {"0": "O", "1": "B-LOC", "2": "B-PER"}
    assert main(["structbert", "evaluate", "--model", str(model_dir), "--input", str(tmp_path / "dev.conll"),
                 "--output", str(tmp_path / "e.json")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["own-tag"]["f1"] == pytest.approx(1.0)
    (tmp_path / "in.txt").write_text("ben lives in rome\n")
    assert main(["structbert", "predict", "--model", str(model_dir), "--input", str(tmp_path / "in.txt"),
                 "--output", str(tmp_path / "tags.jsonl")]) == 0  # fmt: skip
    row = json.loads((tmp_path / "tags.jsonl").read_text())
    assert row["tokens"] == ["ben", "lives", "in", "rome"] and row["tags"] == ["B-PER", "O", "O", "B-LOC"]


def test_extractive_qa_squad(vocab, tmp_path):
    ctx = "The singer wrote the lyrics in one night."
    qas = [{"id": "q1", "question": "who wrote the lyrics?", "answers": [{"text": "The singer", "answer_start": 0}]},
           {"id": "q2", "question": "when?", "answers": [{"text": "in one night", "answer_start": ctx.index("in one")}]}]  # fmt: skip
    squad = {"data": [{"paragraphs": [{"context": ctx, "qas": qas}]}]}
    for split in ("train", "dev"):
        (tmp_path / f"{split}.json").write_text(json.dumps(squad))
    extra = ["training.max_steps=40", "training.lr=3e-3", "training.per_device_batch_size=2", "max_seq_length=64"]
    metrics = _finetune("qa", tmp_path, vocab, tmp_path / "run", *extra)["own-qa"]
    assert metrics["exact_match"] == pytest.approx(1.0) and metrics["f1"] == pytest.approx(1.0)
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "x", "question": "when?", "context": ctx}) + "\n")
    assert main(["structbert", "predict", "--model", str(tmp_path / "run" / "model"), "--input",
                 str(tmp_path / "q.jsonl"), "--output", str(tmp_path / "a.jsonl")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "a.jsonl").read_text()) == {"id": "x", "answer": "in one night"}


@pytest.mark.parametrize(
    "train, dev, needle",
    [
        ("sentence\ttopic\na\tx\nb\ty\n", None, "train.tsv:1: no label column found"),
        ("sentence\tlabel\na\tx\nb\ty\n", "sentence\tlabel\nc\tx\nd\tunseen\n", "dev.tsv:3: label 'unseen' does not"),
        ("sentence\tlabel\na\tx\nb\t\n", None, "train.tsv:3: empty label"),
        ("sentence\tlabel\na\tx\nb,y\n", None, "train.tsv:3: expected 2 tab-separated fields, found 1 (mixed"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_file_and_line(vocab, tmp_path, capsys, train, dev, needle):
    (tmp_path / "train.tsv").write_text(train)
    (tmp_path / "dev.tsv").write_text(dev or train)
    argv = ["structbert", "finetune", "--no-progress", "--recipe", "classify", f"data_dir={tmp_path}",
            f"tokenizer={vocab}", f"output_dir={tmp_path / 'run'}", *TINY, *SHORT]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alicemind: error:") and needle in err and "\n" not in err, err
