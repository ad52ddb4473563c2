"""Tiny fine-tunes on data written in the test: NER with the CRF (entity F1 far above the all-O baseline) and a
CLUE classification task; the saved folder reloads and predicts the same."""

from __future__ import annotations

import json
import random

import pytest
import torch
from labert_testing import FILLER, PLACES, ner_sentence, write_conll, write_lexicon, write_vocab

from alicemind.core.metrics.spans import span_f1
from alicemind.latticebert import LatticeBertForTokenClassification, LatticeBertTokenizer
from alicemind.latticebert.finetuning import run_finetune


@pytest.fixture
def tokenizer_dir(tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    write_vocab(folder)
    write_lexicon(folder)
    return folder


def test_ner_entity_f1_rises_far_above_all_o(tmp_path, tokenizer_dir):
    rng = random.Random(0)
    data = tmp_path / "ner"
    data.mkdir()
    write_conll(data / "train.txt", [ner_sentence(rng) for _ in range(48)])
    dev = [ner_sentence(rng) for _ in range(16)]
    write_conll(data / "dev.txt", dev)
    recipe = {
        "kind": "ner", "data_dir": str(data), "tokenizer": str(tokenizer_dir), "scratch_config": "latticebert.test",
        "model_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        "output_dir": str(tmp_path / "run"), "max_seq_length": 64,
        "training": {"max_steps": 60, "per_device_batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.1, "log_every": 0,
                     "save_every": 0, "precision": "fp32", "seed": 0},
    }  # fmt: skip
    result = run_finetune(recipe, progress_bar=False)
    all_o = span_f1([t for _, t in dev], [["O"] * len(t) for _, t in dev])["f1"]
    assert all_o == 0.0
    assert result.initial["f1"] < 0.3
    assert result.metrics["f1"] > 0.9, result.metrics
    # The saved folder (weights + tokenizer) predicts the same tags.
    model = LatticeBertForTokenClassification.from_pretrained(result.model_dir).eval()
    tok = LatticeBertTokenizer.from_pretrained(result.model_dir)
    enc, positions = tok.encode_tagged(dev[0][0])
    batch = tok.pad([enc])
    tags = model.decode(**batch, label_positions=torch.tensor([positions]), label_mask=torch.ones(1, len(positions)))
    labels = model.config.id2label
    saved = json.loads((result.output_dir / "eval_results.json").read_text())["metrics"]
    assert saved["f1"] == pytest.approx(result.metrics["f1"])
    assert len(tags[0]) == len(dev[0][0]) and all(str(t) in labels for t in tags[0])


def test_seqeval_agrees_with_our_entity_f1():
    seqeval = pytest.importorskip("seqeval.metrics")
    refs = [["B-LOC", "I-LOC", "O", "B-ORG"], ["O", "B-PER", "I-PER", "I-PER"]]
    hyps = [["B-LOC", "I-LOC", "O", "O"], ["B-PER", "I-PER", "O", "I-PER"]]
    assert span_f1(refs, hyps)["f1"] == pytest.approx(seqeval.f1_score(refs, hyps))


def test_clue_classification_learns(tmp_path, tokenizer_dir):
    rng = random.Random(1)
    data = tmp_path / "afqmc"
    data.mkdir()

    def row():
        a = "".join(rng.sample(FILLER, 3)) + rng.choice(PLACES)
        same = rng.random() < 0.5
        b = ("".join(rng.sample(FILLER, 2)) + a[-2:]) if same else "".join(rng.sample(FILLER, 2)) + "人民大学"
        return {"sentence1": a, "sentence2": b, "label": str(int(same))}

    for split, n in (("train", 64), ("dev", 24)):
        (data / f"{split}.json").write_text("".join(json.dumps(row(), ensure_ascii=False) + "\n" for _ in range(n)))
    recipe = {
        "kind": "classify", "task": "afqmc", "data_dir": str(data), "tokenizer": str(tokenizer_dir),
        "scratch_config": "latticebert.test", "output_dir": str(tmp_path / "run"), "max_seq_length": 32,
        "model_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        "training": {"max_steps": 120, "per_device_batch_size": 16, "lr": 1e-3, "log_every": 0, "save_every": 0,
                     "precision": "fp32", "seed": 0},
    }  # fmt: skip
    result = run_finetune(recipe, progress_bar=False)
    assert result.metrics["accuracy"] >= 0.9, result.metrics


def test_question_answering_head_learns_a_span(tokenizer):
    from labert_testing import tiny_config

    from alicemind.latticebert import LatticeBertForQuestionAnswering

    torch.manual_seed(0)
    model = LatticeBertForQuestionAnswering(tiny_config(tokenizer.vocab_size, hidden_dropout_prob=0.0))
    batch = tokenizer(["北京在哪", "上海在哪"], ["我们在北京工作", "我们在上海工作"])
    # The answer is the place name: its two characters in the second text.
    start = torch.tensor([int((batch["input_ids"][i] == tokenizer.get_vocab()[c]).nonzero()[-1]) for i, c in
                          enumerate("北上")])  # fmt: skip
    end = start + 1
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = model(**batch, start_positions=start, end_positions=end).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    s_logits, e_logits = model(**batch).logits
    assert float(loss) < 0.2 * first
    assert s_logits.argmax(-1).tolist() == start.tolist() and e_logits.argmax(-1).tolist() == end.tolist()


def test_bmes_tags_score_as_entities(tmp_path, tokenizer_dir):
    from alicemind.core.data.own_spans import read_conll
    from alicemind.latticebert.finetuning import _as_bioes

    path = tmp_path / "train.bmes"
    write_conll(path, [(list("我在中国人民大学"), ["O", "O", "B-ORG", "M-ORG", "M-ORG", "M-ORG", "M-ORG", "E-ORG"]),
                       (list("北京很好"), ["B-LOC", "E-LOC", "S-X", "O"])])  # fmt: skip
    sentences = read_conll(path)
    refs = [_as_bioes(s.tags) for s in sentences]
    assert span_f1(refs, refs)["f1"] == 1.0
    wrong = [_as_bioes(["O", "O", "B-ORG", "M-ORG", "E-ORG", "O", "O", "O"]), refs[1]]
    assert span_f1(refs, wrong) == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
