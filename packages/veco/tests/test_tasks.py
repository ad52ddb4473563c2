"""The XTREME task kinds end to end on tiny data through the CLI: training, cross-lingual evaluation, tables."""

from __future__ import annotations

import json
import random

import pytest
import torch
from veco_spm import train_spm
from veco_testing import tiny_config

from alicemind.core.cli import main
from alicemind.core.data.own_spans import QAExample
from alicemind.veco import VecoModel, VecoTokenizer
from alicemind.veco.data import answer_tokens, qa_features

ANIMALS = {"en": ["cat", "dog", "fox"], "de": ["katze", "hund", "fuchs"]}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny random VECO encoder folder with a sentencepiece model trained over many scripts + these words."""
    root = tmp_path_factory.mktemp("tasks")
    words = [w for ws in ANIMALS.values() for w in ws] + ["sees", "us", "who"]
    spm_file = train_spm(root / "spm", vocab_size=300, extra=[" ".join(words)] * 50)
    tok = VecoTokenizer(spm_file)
    torch.manual_seed(0)
    model = VecoModel(tiny_config(vocab_size=len(tok), max_position_embeddings=130))
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    return root, tok


def _run(*argv) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_classification_trains_and_evaluates_every_language(base, tmp_path):
    root, _ = base
    rng = random.Random(0)
    labels = ["contradiction", "entailment", "neutral"]
    data = tmp_path / "xnli"
    data.mkdir()
    for name, lang, n in (("train-en.tsv", "en", 240), ("test-en.tsv", "en", 30), ("test-de.tsv", "de", 30)):
        rows = []
        for _ in range(n):
            k = rng.randrange(3)  # the label is which animal the premise names
            rows.append(f"the {ANIMALS[lang][k]} sees us\tsomething\t{labels[k]}\n")
        (data / name).write_text("premise\thypothesis\tlabel\n" + "".join(rows), encoding="utf-8")
    code, out = _run(
        "veco", "finetune", "--recipe", "xnli", f"data_dir={data}", f"model={root / 'base'}", "languages=[en, de]",
        "training.num_epochs=null", "+training.max_steps=150", "training.per_device_batch_size=16",
        "training.gradient_accumulation_steps=1", "training.lr=3e-3", "training.precision=fp32",
        "training.save_every=0", "+training.progress_bar=false", f"training.output_dir={tmp_path / 'run'}",
        "--output", str(tmp_path / "results.json"),
    )  # fmt: skip
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"en", "de", "avg"}
    assert results["en"]["accuracy"] >= 0.9  # English is learnt
    assert results["avg"]["accuracy"] == pytest.approx((results["en"]["accuracy"] + results["de"]["accuracy"]) / 2)
    assert "| en |" in out and "| de |" in out and "| paper | 79.9 |" in out
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert saved["model_type"] == "xlm-roberta" and saved["id2label"] == {
        "0": labels[0],
        "1": labels[1],
        "2": labels[2],
    }
    # evaluate: the saved folder alone, every language, the same table.
    code, out = _run("veco", "evaluate", "--recipe", "xnli", "--model", str(tmp_path / "run" / "final"),
                     f"data_dir={data}", "languages=[en, de]", "--no-progress")  # fmt: skip
    assert code == 0 and f"| en | {100 * results['en']['accuracy']:.1f} |" in out


def test_tagging_scores_entities_on_first_pieces(base, tmp_path):
    root, _ = base
    rng = random.Random(1)
    data = tmp_path / "panx"
    data.mkdir()
    for name, lang, n in (("train-en.tsv", "en", 160), ("test-en.tsv", "en", 20), ("test-de.tsv", "de", 20)):
        sentences = []
        for _ in range(n):
            words = [("the", "O"), (ANIMALS[lang][rng.randrange(3)], "B-PER"), ("sees", "O"), ("us", "O")]
            sentences.append("".join(f"{w}\t{t}\n" for w, t in words))
        (data / name).write_text("\n".join(sentences), encoding="utf-8")
    code, _ = _run(
        "veco", "finetune", "--recipe", "panx", f"data_dir={data}", f"model={root / 'base'}", "languages=[en, de]",
        "training.num_epochs=null", "+training.max_steps=40", "training.per_device_batch_size=16",
        "training.gradient_accumulation_steps=1", "training.lr=3e-3", "training.precision=fp32",
        "training.save_every=0", "+training.progress_bar=false", f"training.output_dir={tmp_path / 'run'}",
        "--output", str(tmp_path / "results.json"),
    )  # fmt: skip
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["en"]["f1"] >= 0.9 and results["en"]["accuracy"] >= 0.95


def test_qa_windows_with_doc_stride_keep_the_answer_span(base):
    _, tok = base
    context = " ".join(f"the dog sees {i}" for i in range(30)) + " the answer fox here"
    start = context.index("answer fox")
    example = QAExample("q1", "where is the fox", context, (("answer fox", start),))
    features = qa_features(tok, [example], max_length=48, doc_stride=16)
    assert len(features) > 3  # the context is split into overlapping windows
    holding = [f for f in features if f["start_positions"] > 0]
    assert holding, "some window holds the answer"
    for f in holding:
        s, e = f["start_positions"], f["end_positions"]
        assert context[f["spans"][s][0] : f["spans"][e][1]] == "answer fox"
    assert all(f["start_positions"] == f["end_positions"] == 0 for f in features if f not in holding)
    assert answer_tokens([None, (0, 3), (3, 7), None], "abc", 0) == (1, 1)
    assert answer_tokens([None, (5, 9), None], "abc", 0) == (0, 0)  # outside the window


def test_qa_trains_and_reports_squad_metrics(base, tmp_path):
    root, _ = base
    rng = random.Random(2)
    data = tmp_path / "xquad"
    data.mkdir()

    def squad(n, lang, offset):
        paragraphs = []
        for i in range(n):
            animal = ANIMALS[lang][rng.randrange(3)]
            context = f"{animal} sees the us"
            paragraphs.append({"context": context, "qas": [{"id": f"{lang}{offset + i}", "question": "who sees",
                               "answers": [{"text": animal, "answer_start": 0}]}]})  # fmt: skip
        return {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}

    (data / "train-v1.1.json").write_text(json.dumps(squad(160, "en", 0)))
    (data / "xquad.en.json").write_text(json.dumps(squad(20, "en", 1000)))
    (data / "xquad.de.json").write_text(json.dumps(squad(20, "de", 2000)))
    code, _ = _run(
        "veco", "finetune", "--recipe", "xquad", f"data_dir={data}", f"model={root / 'base'}", "languages=[en, de]",
        "max_length=64", "doc_stride=32", "training.num_epochs=null", "+training.max_steps=40",
        "training.per_device_batch_size=16", "training.gradient_accumulation_steps=1", "training.lr=3e-3",
        "training.warmup_steps=0", "training.precision=fp32", "training.save_every=0", "+training.progress_bar=false",
        f"training.output_dir={tmp_path / 'run'}", "--output", str(tmp_path / "results.json"),
    )  # fmt: skip
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["en"]["exact_match"] >= 0.9 and results["en"]["f1"] >= 0.9
    assert set(results) == {"en", "de", "avg"}


def test_retrieval_tatoeba_and_bucc(base, tmp_path):
    root, _ = base
    data = tmp_path / "tatoeba"
    data.mkdir()
    sentences = ["the cat sees us", "a dog runs", "лиса прыгает", "敏捷的棕色狐狸", "η γρήγορη αλεπού", "straße schön"]
    # Identical sentences on both sides: any encoder retrieves them exactly (cosine 1 with itself).
    (data / "xx-en.tsv").write_text("".join(f"{s}\t{s}\n" for s in sentences), encoding="utf-8")
    code, _ = _run("veco", "evaluate", "--recipe", "tatoeba", f"data_dir={data}", f"model={root / 'base'}",
                   "languages=[xx]", "layer=1", "--output", str(tmp_path / "t.json"), "--no-progress")  # fmt: skip
    assert code == 0 and json.loads((tmp_path / "t.json").read_text())["xx"]["accuracy"] == 1.0
    code, _ = _run("veco", "evaluate", "--recipe", "bucc", f"data_dir={data}", f"model={root / 'base'}",
                   "languages=[xx]", "layer=0", "--output", str(tmp_path / "b.json"), "--no-progress")  # fmt: skip
    assert code == 0 and json.loads((tmp_path / "b.json").read_text())["xx"]["f1"] == 1.0


def test_reproduce_prints_ours_beside_the_paper(base, tmp_path):
    root, _ = base
    for sub in ("xnli", "xquad", "tatoeba"):
        (tmp_path / sub).mkdir()
    rows = "".join(f"the {a} sees us\tsomething\t{lab}\n" for a, lab in (("cat", "entailment"), ("dog", "neutral")))
    (tmp_path / "xnli" / "train-en.tsv").write_text(rows * 4, encoding="utf-8")
    (tmp_path / "xnli" / "test-en.tsv").write_text(rows, encoding="utf-8")
    squad = {"data": [{"paragraphs": [{"context": "cat sees us", "qas": [
        {"id": "a", "question": "who", "answers": [{"text": "cat", "answer_start": 0}]}]}]}]}  # fmt: skip
    (tmp_path / "xquad" / "train-v1.1.json").write_text(json.dumps(squad))
    (tmp_path / "xquad" / "xquad.en.json").write_text(json.dumps(squad))
    (tmp_path / "tatoeba" / "en-en.tsv").write_text("a cat\ta cat\nthe dog\tthe dog\n", encoding="utf-8")
    train = ["training.gradient_accumulation_steps=1", "training.precision=fp32", "training.save_every=0",
             "+training.progress_bar=false", f"training.output_dir={tmp_path / 'runs'}"]  # fmt: skip

    def flow(items):
        return "[" + ", ".join(f"'{item}'" for item in items) + "]"

    per_task = [f"+tasks.{t}.overrides={flow(train)}" for t in ("xnli", "xquad")]
    per_task.append(f"+tasks.tatoeba.overrides={flow(['layer=1'])}")
    code, out = _run("veco", "reproduce", "--recipe", "reproduce-xtreme", f"data_dir={tmp_path}",
                     f"model={root / 'base'}", "overrides=['languages=[en]']", *per_task)  # fmt: skip
    assert code == 0
    table = {tuple(c.strip() for c in line.strip("|").split("|")) for line in out.splitlines() if line.startswith("|")}
    assert ("tatoeba", "accuracy", "100.0", "75.1") in table  # identical sentences: retrieved exactly
    assert {(t, m, p) for t, m, _, p in table if t != "task" and not t.startswith("-")} == {
        ("xnli", "accuracy", "79.9"), ("xquad", "f1", "77.5"), ("xquad", "exact_match", "61.9"),
        ("tatoeba", "accuracy", "75.1"),
    }  # fmt: skip
