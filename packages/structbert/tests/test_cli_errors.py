"""``alicemind structbert``: atomic convert and one-line user errors (exit 2, no traceback)."""

from __future__ import annotations

import threading

import pytest
import torch

from alicemind.core.cli import main
from alicemind.structbert import StructBertConfig, StructBertModel

TINY = dict(vocab_size=30, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16, type_vocab_size=2)


def _saved_model(folder, hidden: int, seed: int):
    torch.manual_seed(seed)
    model = StructBertModel(StructBertConfig(hidden_size=hidden, intermediate_size=2 * hidden, **TINY))
    model.save_pretrained(folder)
    return model


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_concurrent_converts_into_one_folder_never_mix(tmp_path, capsys):
    sources = {16: _saved_model(tmp_path / "a", 16, 0), 24: _saved_model(tmp_path / "b", 24, 1)}
    dst = tmp_path / "out"
    for _ in range(16):
        barrier = threading.Barrier(2)
        status = {}

        def convert(src, barrier=barrier, status=status):
            barrier.wait()
            status[src] = main(["structbert", "convert", str(tmp_path / src), str(dst)])

        threads = [threading.Thread(target=convert, args=(name,)) for name in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert status == {"a": 0, "b": 0}
        loaded = StructBertModel.from_pretrained(dst)  # strict load: the config fits the weights
        hidden = loaded.config.hidden_size
        expected = sources[hidden].embeddings.word_embeddings.weight
        assert torch.equal(loaded.embeddings.word_embeddings.weight, expected)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]  # no staging folder left
    capsys.readouterr()


def test_convert_replaces_an_old_folder_whole(tmp_path, capsys):
    _saved_model(tmp_path / "src", 16, 0)
    dst = tmp_path / "out"
    _saved_model(dst, 24, 1)
    (dst / "vocab.txt").write_text("[PAD]\nold\n")
    assert main(["structbert", "convert", str(tmp_path / "src"), str(dst)]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors"]
    assert StructBertModel.from_pretrained(dst).config.hidden_size == 16


def test_convert_with_a_bad_vocab_writes_nothing(tmp_path, capsys):
    _saved_model(tmp_path / "src", 16, 0)
    assert main(["structbert", "convert", str(tmp_path / "src"), str(tmp_path / "out"), "--vocab", "/bad"]) == 2
    line = _one_error_line(capsys)
    assert (
        line
        == "alicemind structbert convert: error: --vocab /bad: expected a vocab.txt file or a folder holding vocab.txt"
    )
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_convert_with_vocab_writes_weights_and_tokenizer_as_one_save(tmp_path, capsys):
    _saved_model(tmp_path / "src", 16, 0)
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]))
    dst = tmp_path / "out"
    assert main(["structbert", "convert", str(tmp_path / "src"), str(dst), "--vocab", str(tmp_path / "vocab.txt")]) == 0
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"} <= {p.name for p in dst.iterdir()}


def test_convert_refuses_a_folder_that_is_not_a_model_folder(tmp_path, capsys):
    _saved_model(tmp_path / "src", 16, 0)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.tsv").write_text("x\n")
    assert main(["structbert", "convert", str(tmp_path / "src"), str(tmp_path / "data")]) == 2
    assert "data is not a model folder (it holds train.tsv)" in _one_error_line(capsys)
    assert (tmp_path / "data" / "train.tsv").read_text() == "x\n"
    assert main(["structbert", "convert", str(tmp_path / "src"), str(tmp_path / "data"), "--overwrite"]) == 0
    assert not (tmp_path / "data" / "train.tsv").exists()


def test_convert_input_errors_are_one_line(tmp_path, capsys):
    _saved_model(tmp_path / "src", 16, 0)
    src, dst = str(tmp_path / "src"), str(tmp_path / "out")
    assert main(["structbert", "convert", src, dst, "--preset", "bogus"]) == 2
    assert "unknown structbert preset 'bogus'" in _one_error_line(capsys)
    bad = tmp_path / "bad.json"
    bad.write_text('{"hidden_size": "16"}')
    assert main(["structbert", "convert", src, dst, "--config", str(bad)]) == 2
    assert _one_error_line(capsys).endswith(
        "bad.json: StructBertConfig field 'hidden_size': expected an integer, got '16'"
    )
    (tmp_path / "src" / "config.json").write_text('{"hidden_size": 16,')
    assert main(["structbert", "convert", src, dst]) == 2
    line = _one_error_line(capsys)
    assert "src/config.json is not valid JSON" in line and "line 1, column" in line
    assert not (tmp_path / "out").exists()


# One bad value per kind of recipe key, for the finetune and pretrain recipes. Each must be refused in one line
# naming the key before any data or model is read (no data_dir / corpus is given, so slow work would fail else).
SWEEP = [
    ("finetune", "glue-mnli", "training.lr=abc", "'training.lr' must be a number >= 0, got 'abc'"),  # float
    ("finetune", "glue-mnli", "training.num_epochs=two", "'training.num_epochs' must be an integer >= 1"),  # int
    ("finetune", "glue-mnli", "training.per_device_batch_size=0", "must be an integer >= 1 (or null), got 0"),
    ("finetune", "glue-mnli", "training.max_steps=1.5", "'training.max_steps' must be an integer >= 1"),
    ("finetune", "glue-mnli", "fast_train=maybe", "'fast_train' must be true or false, got 'maybe'"),  # bool
    ("finetune", "glue-mnli", "+training.tensorboard=3", "'training.tensorboard' must be true or false, got 3"),
    ("finetune", "glue-mnli", "training.precision=fp8", "'training.precision' must be one of 'auto'"),  # choice
    ("finetune", "glue-mnli", "training.scheduler=cosine2", "'training.scheduler' must be one of 'linear'"),
    ("finetune", "glue-mnli", "training.adam_betas=0.9", "'training.adam_betas' must be a list of 2 numbers"),  # list
    ("finetune", "glue-mnli", "training.adam_betas=[0.9, 2]", "a list of 2 numbers in [0, 1], got (0.9, 2)"),
    ("finetune", "glue-mnli", "training.warmup_ratio=1.5", "'training.warmup_ratio' must be a number in [0, 1]"),
    ("finetune", "glue-mnli", "adversarial.sigma=small", "'adversarial.sigma' must be a number"),
    ("finetune", "glue-mnli", "max_seq_length=0", "'max_seq_length' must be an integer >= 1, got 0"),  # positive
    ("finetune", "glue-mnli", "reserve_p=1.5", "'reserve_p' must be a number in (0, 1]"),
    ("finetune", "glue-mnli", "child_tuning=X", "'child_tuning' must be one of null, 'F', 'D', got 'X'"),
    ("finetune", "glue-mnli", "training.max_steps=100", "exactly one of max_steps and num_epochs"),
    ("pretrain", "pretrain-demo", "data.masked_lm_prob=2", "'data.masked_lm_prob' must be a number in [0, 1]"),
    ("pretrain", "pretrain-demo", "data.wso_trigram_prob=-0.1", "'data.wso_trigram_prob' must be a number in"),
    ("pretrain", "pretrain-demo", "data.whole_word_mask=bpe", "'data.whole_word_mask' must be one of null"),
    ("pretrain", "pretrain-demo", "data.dupe_factor=many", "'data.dupe_factor' must be an integer >= 0"),
    ("pretrain", "pretrain-demo", "data.max_seq_length=0", "'data.max_seq_length' must be an integer >= 1"),
    ("pretrain", "pretrain-demo", "tokenizer.lowercase=2", "'tokenizer.lowercase' must be true or false"),
    ("pretrain", "pretrain-demo", "corpus_format=xml", "'corpus_format' must be one of 'auto', 'text', 'jsonl'"),
    ("pretrain", "pretrain-demo", "model.config.hidden_size=0", "'model.config.hidden_size' must be an integer"),
    ("pretrain", "pretrain-demo", "training.save_every=-1", "'training.save_every' must be an integer >= 0"),
]


@pytest.mark.parametrize(("verb", "recipe", "override", "message"), SWEEP)
def test_bad_recipe_values_are_one_line_with_status_2(capsys, verb, recipe, override, message):
    assert main(["structbert", verb, "--recipe", recipe, override]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("alicemind: error: recipe ") and message in line, line


@pytest.mark.parametrize(("verb", "recipe"), [("finetune", "glue-mnli"), ("pretrain", "pretrain-demo")])
def test_recipe_verb_help_lists_real_keys_with_defaults(capsys, verb, recipe):
    assert main(["structbert", verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "training.lr=2e-5" in out and "optim.lr" not in out
    assert f"with the values of recipe '{recipe}'" in out and "  training.seed = 42" in out
    assert ("  data.masked_lm_prob = 0.15" in out) == (verb == "pretrain")
