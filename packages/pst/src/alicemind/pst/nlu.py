"""``glue-*`` recipes: PST fine-tuning of a BERT/RoBERTa-style encoder on a GLUE task (the original ``NLU/run_glue.py``
setting) with core's task registry, collator, metrics and Trainer; the model loads through transformers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.data import DataCollatorWithPadding, TaskSpec, get_task, load_task_examples
from alicemind.core.metrics import glue_metrics
from alicemind.core.training import move_to_device
from alicemind.pst.recipes_common import finish_run, require_transformers, train_with_pst

RECIPE_KEYS = {
    "kind", "task", "data_dir", "model", "tokenizer", "output_dir", "max_seq_length", "eval_batch_size", "eval_split",
    "target_modules", "exclude_modules", "trainable_modules", "metric_for_selection", "pst", "training",
}  # fmt: skip


def task_folder(data_dir: str | Path | None, task: TaskSpec) -> Path:
    """``data_dir`` itself, or its sub-folder named after the task (``SST-2``, ``sst2``, any case)."""
    if data_dir is None:
        raise CliError("no data directory given: add data_dir=PATH")
    base = Path(data_dir)
    if not base.is_dir():
        raise CliError(f"data directory {base} does not exist")
    norm = re.sub(r"[-_\s]", "", task.name.lower())
    for child in sorted(base.iterdir()):
        if child.is_dir() and re.sub(r"[-_\s]", "", child.name.lower()) == norm:
            return child
    return base


def load_encoder(model_dir: str | Path, task: TaskSpec, tokenizer_dir: str | Path | None = None):
    """A Hugging Face (or HF-layout family) folder as ``AutoModelForSequenceClassification`` with a head of the
    task's size, and its tokenizer."""
    transformers = require_transformers()
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise CliError(f"model {path} is not a Hugging Face model folder (no config.json)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir or path))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=task.num_labels)
    return model, tokenizer


def encode(tokenizer, task: TaskSpec, examples, max_length: int) -> list[dict[str, Any]]:
    """Tokenised features with the task's label (class index or float)."""
    pairs = examples[0].text_b is not None if examples else False
    enc = tokenizer([e.text_a for e in examples], [e.text_b for e in examples] if pairs else None,
                    truncation=True, max_length=max_length)  # fmt: skip
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    return [{**{k: enc[k][i] for k in keys}, "labels": task.label_id(e.label)} for i, e in enumerate(examples)]


@torch.no_grad()
def predict(model, features: list[dict[str, Any]], collate, batch_size: int) -> np.ndarray:
    """Logits (classification) or values (regression) for ``features``, in order."""
    device = next(model.parameters()).device
    outs = []
    for start in range(0, len(features), batch_size):
        rows = [{k: v for k, v in f.items() if k != "labels"} for f in features[start : start + batch_size]]
        outs.append(model(**move_to_device(collate(rows), device)).logits.float().cpu())
    out = torch.cat(outs).numpy()
    return out[:, 0] if out.shape[1] == 1 else out


def run_glue(recipe: dict[str, Any], *, progress_bar: bool = True) -> dict[str, Any]:
    """Convert the encoder to PST, fine-tune on the task, evaluate every epoch, merge and save; the results."""
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise CliError(f"unknown recipe key(s) {unknown}; known: {sorted(RECIPE_KEYS)}")
    if not recipe.get("model"):
        raise CliError("no model given: add model=PATH (a Hugging Face BERT/RoBERTa folder)")
    task = get_task(recipe.get("task") or "")
    folder = task_folder(recipe.get("data_dir"), task)
    model, tokenizer = load_encoder(recipe["model"], task, recipe.get("tokenizer"))
    max_len = int(recipe.get("max_seq_length") or 128)
    train = encode(tokenizer, task, load_task_examples(task, folder, "train"), max_len)
    dev = encode(tokenizer, task, load_task_examples(task, folder, recipe.get("eval_split") or "dev"), max_len)
    if not train or not dev:
        raise CliError(f"{task.name}: empty train or eval split in {folder}")
    collate = DataCollatorWithPadding(tokenizer.pad_token_id or 0)
    batch = int((recipe.get("training") or {}).get("per_device_batch_size") or 32)
    loader = DataLoader(train, batch_size=batch, shuffle=True, collate_fn=collate)
    labels = np.array([f["labels"] for f in dev])
    eval_batch = int(recipe.get("eval_batch_size") or 32)

    def eval_fn(m) -> dict[str, float]:
        return glue_metrics(task.name, predict(m, dev, collate, eval_batch), labels)

    run = train_with_pst(model, recipe, loader, eval_fn, progress_bar=progress_bar)
    results = finish_run(run, {"kind": "glue", "task": task.name, "model": str(recipe["model"])},
                         metric=recipe.get("metric_for_selection") or "score")  # fmt: skip
    tokenizer.save_pretrained(str(run.output_dir / "model"))
    return results
