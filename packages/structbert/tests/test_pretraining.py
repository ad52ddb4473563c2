"""``alicemind structbert pretrain``: corpus -> WordPiece -> MLM/WSO/SSO shards -> training, on the demo corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alicemind.core.cli import main
from alicemind.structbert import StructBertForPreTraining, StructBertTokenizer
from alicemind.structbert.demo import demo_corpus_path
from alicemind.structbert.pretraining import continuation_flags, tokenize_documents, train_wordpiece_vocab
from alicemind.structbert.pretraining_data import load_pretraining_dataset


@pytest.mark.slow
def test_short_pretraining_run_learns_every_objective(tmp_path, capsys):
    out = tmp_path / "pt"
    argv = ["structbert", "pretrain", "--no-progress", "--recipe", "pretrain-demo", f"corpus={demo_corpus_path()}",
            f"output_dir={out}", "training.max_steps=300", "training.lr=2e-3", "training.eval_every=0",
            "training.log_every=25"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    held_out = json.loads((out / "held_out.json").read_text())
    before, after = held_out["initial"], held_out["final"]
    # Each objective measured separately on held-out documents (MLM-only and WSO-only instance sets).
    assert after["mlm_loss"] < before["mlm_loss"] - 1.5
    assert after["wso_loss"] < before["wso_loss"] - 1.5
    assert after["sso_loss"] < before["sso_loss"] - 0.05
    assert after["wso_acc"] > 0.15 and after["mlm_acc"] > 0.2
    assert after["sso_acc"] > 0.45  # chance is 1/3 (three balanced classes)
    # The training log carries the per-objective metrics, and they fall too.
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in log if "mlm_loss" in r]
    assert {"mlm_loss", "mlm_acc", "sso_loss", "sso_acc"} <= set(train[0])
    assert train[-1]["mlm_loss"] < train[0]["mlm_loss"] and train[-1]["sso_loss"] < train[0]["sso_loss"]
    # Shards on disk, and a model folder (our format + tokenizer) that loads back.
    shards = load_pretraining_dataset(out / "data" / "train")
    assert len(shards) > 1000 and set(shards[0]) >= {"input_ids", "mlm_labels", "sentence_order_label"}
    model = StructBertForPreTraining.from_pretrained(out / "model")
    tokenizer = StructBertTokenizer.from_pretrained(out / "model")
    assert model.config.vocab_size == tokenizer.vocab_size
    assert tokenizer.convert_ids_to_tokens(0) == "[PAD]"


def test_wordpiece_vocab_whole_word_flags_and_jsonl_corpus(tmp_path):
    docs = [["The gardener waters tomatoes.", "Gardeners water everything."], ["Computers compute."]] * 5
    vocab = train_wordpiece_vocab(docs, 60, tmp_path / "vocab.txt")
    tokenizer = StructBertTokenizer.from_vocab_file(vocab)
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ids = tokenize_documents(tokenizer, docs[:2])
    assert [len(d) for d in ids] == [2, 1]
    assert tokenizer.decode(ids[0][0].tolist()) == "the gardener waters tomatoes."
    flags = continuation_flags(tokenizer, "wordpiece")
    tokens = tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size)))
    assert flags.tolist() == [t.startswith("##") for t in tokens] and flags.any()


def test_jieba_whole_word_groups_mark_word_continuations(tmp_path):
    chars = list("我们喜欢北京天安门")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", encoding="utf-8")
    tokenizer = StructBertTokenizer.chinese(vocab)
    ids = np.array(tokenizer("我们喜欢北京")["input_ids"])
    flags = continuation_flags(tokenizer, "jieba")(ids)
    # [CLS] 我 们 喜 欢 北 京 [SEP]: jieba reads 我们 / 喜欢 / 北京; the second character of each continues it.
    assert flags.tolist() == [False, False, True, False, True, False, True, False]


def test_bad_pretrain_inputs_exit_2(tmp_path, capsys):
    base = ["structbert", "pretrain", "--no-progress", "--recipe", "pretrain-demo", f"output_dir={tmp_path}"]
    assert main([*base, f"corpus={tmp_path / 'missing.txt'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"text": "a.\\nb."}\n{"text": 3}\n')
    assert main([*base, f"corpus={bad}"]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
    assert main([*base, f"corpus={bad}", "data.masking=0.2"]) == 2
    assert "unknown recipe key 'data.masking'" in capsys.readouterr().err
