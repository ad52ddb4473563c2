"""Dependency labels from (question, SQL, table), the curriculum order, and a short pre-training run."""

from __future__ import annotations

import json

import pytest
import torch
from sdcup_testing import generated_questions, generated_tables, write_dataset

from alicemind.sdcup import DEPENDENCY_LABELS, SqlQuery, Table, TableQuestion
from alicemind.sdcup.curriculum import CurriculumBatchSampler, pacing_function
from alicemind.sdcup.pretraining import build_items, derive_dependencies, easy_to_hard, write_corpus
from alicemind.sdcup.training import run_pretraining

L = {name: i for i, name in enumerate(DEPENDENCY_LABELS)}


def test_dependency_labels_are_derived_from_the_sql():
    table = Table(["name", "city", "price"], ["text", "text", "real"], [["alpha", "paris", 10]])
    tokens = ["how", "many", "name", "in", "paris", "with", "price", "above", "20"]
    sql = SqlQuery([0], [4], [(1, 2, "paris"), (2, 0, "20")], 1)
    heads, labels = derive_dependencies(TableQuestion(" ".join(tokens), table, tokens, sql), tokens)
    dummy = 3
    assert heads == [0, 0, 0, dummy, 1, dummy, 2, 2, 2]
    assert labels == [L["agg"], L["agg"], L["scol"], 0, L["val"], 0, L["wcol"], L["op"], L["val"]]
    order = SqlQuery([0], [0], [(2, 5, "1")], 0)
    tokens = ["name", "with", "highest", "price"]
    heads, labels = derive_dependencies(TableQuestion("", table, tokens, order), tokens)
    assert heads == [0, dummy, 2, 2] and labels == [L["scol"], 0, L["sort_op"], L["sort_col"]]


def test_pacing_functions_and_curriculum_order(tokenizer):
    lin = pacing_function("linear", start=0.2, duration_steps=10)
    root = pacing_function("root", start=0.2, duration_steps=10)
    step = pacing_function("step", start=0.2, duration_steps=10, steps=4)
    assert [round(lin(t), 2) for t in (0, 5, 10, 20)] == [0.2, 0.6, 1.0, 1.0]
    assert round(root(5), 4) == round((0.04 + 0.96 * 0.5) ** 0.5, 4) and root(10) == 1.0
    assert [step(t) for t in (0, 2, 3, 5, 8, 10)] == pytest.approx([0.2, 0.2, 0.4, 0.6, 0.8, 1.0])
    with pytest.raises(ValueError, match="unknown pacing"):
        pacing_function("fastest", start=0.2, duration_steps=1)
    examples = generated_questions(generated_tables(), 40, seed=3)
    items = build_items(examples, tokenizer, max_seq_length=128, mlm_probability=0.15, seed=0)
    order = easy_to_hard(items)
    scores = [items[i].difficulty for i in order]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    sampler = CurriculumBatchSampler(order, 4, 12, lin, seed=0)
    batches = list(sampler)
    for t, batch in enumerate(batches):
        allowed = set(order[: sampler.available(t)])
        assert set(batch) <= allowed
    assert sampler.available(0) == 8 and sampler.available(11) == 40
    assert list(sampler) == batches  # replayable (resume)
    first = {items[i].difficulty for b in batches[:2] for i in b}
    assert max(first) <= scores[7]


def test_corpus_builder_writes_struct_fields(tmp_path, tokenizer):
    examples = generated_questions(generated_tables(), 3, seed=1)
    assert write_corpus(examples, tokenizer, tmp_path / "corpus.jsonl") == 3
    records = [json.loads(line) for line in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    for ex, rec in zip(examples, records, strict=True):
        heads, labels = derive_dependencies(ex, rec["question_tok"])
        assert rec["struct_question"] == heads and rec["struct_label"] == labels
        assert len(heads) == len(rec["question_tok"]) and any(labels)


def test_short_pretraining_run_lowers_the_dependency_loss(tmp_path, vocab_file):
    torch.manual_seed(0)
    paths = write_dataset(tmp_path, train=48, dev=4)
    recipe = {"train_file": str(paths["train_file"]), "tables": str(paths["tables"]), "tokenizer": str(vocab_file),
              "scratch_config": "sdcup.test", "output_dir": str(tmp_path / "pt"),
              "model_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
              "data": {"max_seq_length": 128, "mlm_probability": 0.15},
              "curriculum": {"pacing": "linear", "start": 0.3, "duration": 0.5},
              "training": {"max_steps": 40, "per_device_batch_size": 8, "lr": 2e-3, "scheduler": "constant",
                           "precision": "fp32", "log_every": 20, "seed": 0, "save_every": 40}}  # fmt: skip
    result = run_pretraining(recipe, progress_bar=False)
    assert result.final["dependency_loss"] < 0.5 * result.initial["dependency_loss"]
    assert result.final["arc_acc"] > result.initial["arc_acc"] + 0.2, (result.initial, result.final)
    assert (result.model_dir / "model.safetensors").is_file() and (result.model_dir / "vocab.txt").is_file()
    saved = json.loads((tmp_path / "pt" / "pretrain_results.json").read_text())
    assert saved["final"]["dependency_loss"] == pytest.approx(result.final["dependency_loss"])
