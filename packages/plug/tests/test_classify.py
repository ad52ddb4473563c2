"""CLUE classification through ``alicemind plug finetune --recipe clue-*`` (and your own files) on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from plug_testing import CLASSIFY_ROWS as ROWS
from plug_testing import classify_args, logged_losses, tiny_config, write_afqmc, write_vocab

from alicemind.core.cli import list_recipes, load_recipe, main
from alicemind.plug import PlugForConditionalGeneration, PlugForSequenceClassification, PlugTokenizer


@pytest.fixture(scope="module")
def generation_model(tmp_path_factory) -> Path:
    """A generation checkpoint: the classifier is new, the decoder is not built."""
    torch.manual_seed(0)
    folder = PlugForConditionalGeneration(tiny_config()).save_pretrained(tmp_path_factory.mktemp("m") / "model")
    write_vocab(folder / "vocab.txt", 128)
    return folder


_args = classify_args


def test_clue_recipes_follow_sofa_defaults():
    names = set(list_recipes("plug"))
    tasks = {"afqmc", "tnews", "iflytek", "cmnli", "ocnli", "csl", "cluewsc2020"}
    assert {f"clue-{t}" for t in tasks} | {"classify"} <= names
    recipe = load_recipe("plug", "clue-tnews")
    assert recipe["task"] == "tnews" and recipe["training"]["lr"] == 3e-5 and recipe["data"]["max_seq_length"] == 128
    assert recipe["published"]["accuracy"] == 73.06


def test_clue_afqmc_trains_and_scores_the_dev_split(generation_model, tmp_path, capsys):
    data = write_afqmc(tmp_path / "afqmc")
    out = tmp_path / "run"
    assert main(_args("clue-afqmc", generation_model, out, f"data_dir={data}")) == 0
    result = json.loads(capsys.readouterr().out)
    losses = list(logged_losses(out).values())
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])  # it learns the tiny task
    # The reported accuracy is the saved model's on dev, recomputed here from its logits.
    model = PlugForSequenceClassification.from_pretrained(out / "final").eval()
    assert model.classifier.classifiers[0].out_features == 2 and not hasattr(model, "decoder")
    tokenizer = PlugTokenizer.from_pretrained(out / "final")
    enc = tokenizer([a for a, _, _ in ROWS], [b for _, b, _ in ROWS], padding=True, return_tensors="pt")
    with torch.no_grad():
        preds = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits.argmax(-1)
    want = float((preds == torch.tensor([int(y) for _, _, y in ROWS])).double().mean())
    assert result["task"] == "afqmc" and result["metrics"]["accuracy"] == pytest.approx(want)
    start = PlugForConditionalGeneration.from_pretrained(generation_model)
    assert not torch.equal(model.encoder.layers[0].ffn.fc_in.weight, start.encoder.layers[0].ffn.fc_in.weight)


def test_own_files_single_sentence_with_named_labels(generation_model, tmp_path, capsys):
    rows = [("一丁一丁", "pos"), ("七万", "neg"), ("丁丁一", "pos"), ("万七万", "neg")]
    text = "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows)
    (tmp_path / "train.tsv").write_text(text * 1, encoding="utf-8")
    (tmp_path / "dev.tsv").write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    args = _args("classify", generation_model, out, f"data.train={tmp_path / 'train.tsv'}",
                 f"data.valid={tmp_path / 'dev.tsv'}")  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "own" and 0.0 <= result["metrics"]["accuracy"] <= 1.0
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["labels"] == ["neg", "pos"] and config["num_labels"] == 2


def test_a_clue_task_without_its_folder_is_one_line(generation_model, tmp_path, capsys):
    assert main(_args("clue-afqmc", generation_model, tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data_dir" in err[0]
    assert main(_args("clue-afqmc", generation_model, tmp_path / "run", "data_dir=.", "parallel.tp=3")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "parallel.tp=3" in err[0] and "1 launched rank" in err[0]
    assert not (tmp_path / "run").exists()
