"""Tiny fine-tunes: FUNSD entity F1 rises well above the majority baseline; DocVQA and RVL-CDIP train and score."""

from __future__ import annotations

import json

import pytest
from structurallm_testing import synthetic_pages, write_funsd_split

from alicemind.structurallm import read_documents
from alicemind.structurallm.finetuning import load_finetuned, run_evaluate, run_finetune
from alicemind.structurallm.tasks import answer_word_span, predict

TRAINING = {"per_device_batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.1, "precision": "fp32", "seed": 5,
            "save_every": 0, "log_every": 100}  # fmt: skip


def _recipe(tmp_path, kind, data_dir, steps, **extra):
    return {"kind": kind, "data_dir": str(data_dir), "tokenizer": str(tmp_path / "tok"),
            "scratch_config": "structurallm.test", "output_dir": str(tmp_path / kind), "max_seq_length": 32,
            "doc_stride": 8, "eval_split": "test", "training": {**TRAINING, "max_steps": steps}, **extra}  # fmt: skip


def test_funsd_entity_f1_rises_well_above_majority(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    data = tmp_path / "funsd"
    write_funsd_split(data / "training_data" / "annotations", 16, seed=0)  # FUNSD's own folder layout
    write_funsd_split(data / "testing_data" / "annotations", 6, seed=1)
    recipe = _recipe(tmp_path, "funsd", data, 120, model_config={"hidden_dropout_prob": 0.0})
    # Pages run past 32 tokens: the sliding window must cover and score every word.
    result = run_finetune(recipe, progress_bar=False)
    assert result.initial["f1"] < 0.3  # the majority tag (O) finds no entity: F1 0
    assert result.metrics["f1"] > 0.9
    evaluated = run_evaluate(recipe, result.model_dir, split="test")
    assert evaluated["f1"] == pytest.approx(result.metrics["f1"])
    model, encoder, id2label = load_finetuned("funsd", result.model_dir, recipe)
    doc = read_documents(data / "testing_data" / "annotations")[0]
    assert predict("funsd", model, encoder, doc, id2label) == doc.labels


def _qa_rows(count, seed):
    rows = []
    for n, row in enumerate(synthetic_pages(count, seed)):
        first = row["words"][:4]  # the first cell's text: "<key> of the <key>"
        row.update(id=f"q{n}", question="what is first", answers=[" ".join(first[:2])])
        rows.append(row)
    return rows


def test_docvqa_answer_spans_and_anls(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    data = tmp_path / "docvqa"
    data.mkdir()
    for split, seed in (("train", 0), ("test", 1)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _qa_rows(12, seed)))
    docs = read_documents(data / "train.jsonl")
    assert answer_word_span(docs[0]) == (0, 1)
    result = run_finetune(_recipe(tmp_path, "docvqa", data, 80, max_seq_length=40), progress_bar=False)
    assert result.metrics["anls"] > result.initial["anls"] and result.metrics["anls"] > 0.8


def test_rvl_cdip_document_classes(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    data = tmp_path / "rvl"
    data.mkdir()
    for split, seed in (("train", 0), ("test", 1)):
        # Fixed boxes: in a model this small, coordinate rows never seen in training are untrained noise.
        rows = synthetic_pages(16, seed, jitter=0)
        for n, row in enumerate(rows):  # invoices say "form" where letters say "name"
            row["label"] = "invoice" if n % 2 else "letter"
            row["words"] = ["form" if n % 2 and w == "name" else w for w in row["words"]]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_finetune(_recipe(tmp_path, "rvl-cdip", data, 60), progress_bar=False)
    assert result.initial["accuracy"] <= 0.75 and result.metrics["accuracy"] >= 0.9
