"""Tiny fine-tunes on synthetic features whose answers follow from the features: VQA (soft scores, BertAdam),
NLVR2 (two images), then evaluate and predict from the fine-tuned folder alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from structvbert_testing import COLORS, TINY, random_image, synthetic_vqa, tsv_row, write_tsv, write_vocab

from alicemind.core.cli import main as cli_main
from alicemind.structvbert.finetuning import run_finetune

TRAINING = dict(num_epochs=None, max_steps=100, per_device_batch_size=12, lr=1e-3, warmup_ratio=0.1,
                scheduler="linear", weight_decay=0.01, adam_eps=1e-6, max_grad_norm=5.0, seed=3, precision="fp32",
                log_every=20, save_every=0, progress_bar=False)  # fmt: skip
SCRATCH = {k: v for k, v in TINY.items()}


def _recipe(data, out, task, **extra):
    return dict(task=task, data_dir=str(data), train_splits=["train"], eval_split="valid",
                features=[str(data / "features.tsv")], feature_cache=str(data / "cache"), tokenizer=str(data),
                scratch_config="structvbert.test", model_config={**SCRATCH, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
                max_objects=8, max_text_length=12, output_dir=str(out), eval_batch_size=16,
                training=dict(TRAINING), **extra)  # fmt: skip


def test_vqa_finetune_reaches_high_soft_accuracy_then_evaluate_and_predict(tmp_path, capsys):
    data = synthetic_vqa(tmp_path / "vqa")
    result = run_finetune(_recipe(data, tmp_path / "run", "vqa", optimizer="bertadam"), progress_bar=False)
    assert result.initial["soft_accuracy"] < 0.6
    assert result.metrics["soft_accuracy"] >= 0.9
    assert json.loads((tmp_path / "run" / "eval_results.json").read_text())["metrics"] == result.metrics
    config = json.loads((result.model_dir / "config.json").read_text())
    assert sorted(config["answers"]) == sorted(COLORS)

    out = tmp_path / "eval.json"
    code = cli_main(["structvbert", "evaluate", "--model", str(result.model_dir), "--task", "vqa", "--data-dir",
                     str(data), "--split", "valid", "--feature-cache", str(data / "cache"), "--output", str(out)])  # fmt: skip
    assert code == 0
    assert json.loads(out.read_text())["metrics"]["soft_accuracy"] == pytest.approx(result.metrics["soft_accuracy"])

    capsys.readouterr()
    code = cli_main(["structvbert", "predict", "--model", str(result.model_dir), "--feature-cache", str(data / "cache"),
                     "--image-id", "img1", "--question", "what is the color of it", "--top-k", "2"])  # fmt: skip
    assert code == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["answers"][0]["answer"] == COLORS[1] and len(row["answers"]) == 2


def test_gqa_finetune_scores_plain_accuracy(tmp_path):
    data = synthetic_vqa(tmp_path / "gqa", num_images=48)
    for split in ("train", "valid"):  # GQA: one answer per question, score 1
        rows = json.loads((data / f"{split}.json").read_text())
        for row in rows:
            row["label"] = {max(row["label"], key=row["label"].get): 1.0}
        (data / f"{split}.json").write_text(json.dumps(rows))
    result = run_finetune(_recipe(data, tmp_path / "run", "gqa", optimizer="bertadam"), progress_bar=False)
    assert set(result.metrics) == {"accuracy"}
    assert result.initial["accuracy"] < 0.6 and result.metrics["accuracy"] >= 0.9


def test_nlvr2_finetune_learns_pairs(tmp_path):
    """Label = both images of the pair show color code 1 (needs both pooled vectors)."""
    rng = np.random.default_rng(1)
    data = tmp_path / "nlvr2"
    data.mkdir()
    rows, colors = [], []
    for i in range(24):
        feats, boxes, h, w = random_image(rng, 4)
        feats[:, i % 2] += 5.0
        rows.append(tsv_row(f"im{i}", feats, boxes, h, w))
        colors.append(i % 2)
    write_tsv(data / "features.tsv", rows)
    pairs = [{"identifier": f"p{a}-{b}", "img0": f"im{a}", "img1": f"im{b}", "sent": "both show it",
              "label": int(colors[a] == colors[b] == 1)} for a in range(24) for b in range(24) if a != b]  # fmt: skip
    order = np.random.default_rng(2).permutation(len(pairs))
    (data / "train.json").write_text(json.dumps([pairs[i] for i in order[:160]]))
    (data / "valid.json").write_text(json.dumps([pairs[i] for i in order[160:240]]))
    write_vocab(data)
    recipe = _recipe(data, tmp_path / "run", "nlvr2", optimizer="adamw")
    recipe["training"]["max_steps"] = 200
    result = run_finetune(recipe, progress_bar=False)
    assert result.initial["accuracy"] < 0.8
    assert result.metrics["accuracy"] >= 0.95


def test_finetune_errors_are_one_line(tmp_path, capsys):
    data = synthetic_vqa(tmp_path / "vqa", num_images=8)
    code = cli_main(["structvbert", "finetune", "--recipe", "vqa", f"data_dir={data}", "task=vqax"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "task" in err[0] and "vqax" in err[0]
    code = cli_main(["structvbert", "finetune", "--recipe", "vqa", f"data_dir={tmp_path / 'nowhere'}"])
    assert code == 2 and "is not a folder" in capsys.readouterr().err
