"""``glue-*`` recipes: CAP on a GLUE task with core's task registry, collator, metrics and Trainer; the student
and teacher load through transformers (the ``[transformers]`` extra)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from alicemind.cap.config import CapConfig
from alicemind.core.cli import CliError
from alicemind.core.data import DataCollatorWithPadding, TaskSpec, get_task, load_task_examples
from alicemind.core.metrics import glue_metrics
from alicemind.core.training import TrainingConfig, move_to_device

RECIPE_KEYS = {
    "kind", "task", "data_dir", "model", "teacher", "tokenizer", "output_dir", "max_seq_length", "eval_batch_size",
    "cap", "training",
}  # fmt: skip


def require_transformers():
    try:
        import transformers
    except ModuleNotFoundError:
        raise CliError("the glue recipes load Hugging Face models: pip install 'alicemind-cap[transformers]'") from None
    transformers.logging.set_verbosity_error()
    return transformers


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


def model_folder(path: str | Path | None, role: str) -> Path:
    if path is None:
        raise CliError(f"no {role} given: add {role}=PATH (a Hugging Face model folder)")
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise CliError(f"{role} {folder} is not a Hugging Face model folder (no config.json)")
    return folder


def check_teacher(path: str | Path | None, task: TaskSpec) -> None:
    """The teacher folder exists and was fine-tuned for the task's label count."""
    folder = model_folder(path, "teacher")
    config = require_transformers().AutoConfig.from_pretrained(str(folder))
    if getattr(config, "num_labels", None) != task.num_labels:
        raise CliError(
            f"the teacher {folder} has {config.num_labels} labels, task {task.name} has {task.num_labels}: "
            "fine-tune the teacher on the same task"
        )


def load_classifier(path: str | Path | None, task: TaskSpec, role: str):
    """A Hugging Face folder as ``AutoModelForSequenceClassification`` with the task's label count."""
    transformers = require_transformers()
    folder = model_folder(path, role)
    return transformers.AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=task.num_labels)


def encode(tokenizer, task: TaskSpec, examples, max_length: int) -> list[dict[str, Any]]:
    """Tokenised features with the task's label."""
    pairs = bool(examples) and examples[0].text_b is not None
    enc = tokenizer([e.text_a for e in examples], [e.text_b for e in examples] if pairs else None,
                    truncation=True, max_length=max_length)  # fmt: skip
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    return [{**{k: enc[k][i] for k in keys}, "labels": task.label_id(e.label)} for i, e in enumerate(examples)]


def make_eval_fn(task: TaskSpec, features: list[dict[str, Any]], collate, batch_size: int):
    """``model -> glue metrics`` over ``features``."""
    loader = DataLoader(features, batch_size=batch_size, collate_fn=collate)

    @torch.no_grad()
    def evaluate(model) -> dict[str, float]:
        device = next(model.parameters()).device
        preds, labels = [], []
        for batch in loader:
            batch = move_to_device(batch, device)
            labels.append(batch.pop("labels").cpu().numpy())
            preds.append(model(**batch).logits.float().cpu().numpy())
        return glue_metrics(task.name, np.concatenate(preds), np.concatenate(labels))

    return evaluate


def cap_config_of(recipe: dict[str, Any]) -> CapConfig:
    try:
        return CapConfig.from_dict(dict(recipe.get("cap") or {}))
    except (TypeError, ValueError) as err:
        raise CliError(f"recipe cap section: {err}") from None


def training_config_of(recipe: dict[str, Any], output_dir: str, progress_bar: bool) -> TrainingConfig:
    values = dict(recipe.get("training") or {})
    if "adam_betas" in values:
        values["adam_betas"] = tuple(values["adam_betas"])
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CliError(f"unknown training key(s) {', '.join(unknown)}")
    values.setdefault("progress_bar", progress_bar)
    try:
        return TrainingConfig(**values)
    except (TypeError, ValueError) as err:
        raise CliError(f"recipe training section: {err}") from None


def run_glue_recipe(recipe: dict[str, Any], *, progress_bar: bool = True) -> dict[str, Any]:
    """Prune as the recipe says; writes ``output_dir`` (step folders or the pruned model) and returns the results."""
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise CliError(f"unknown recipe key(s) {', '.join(unknown)}; known: {', '.join(sorted(RECIPE_KEYS))}")
    if recipe.get("kind") != "glue":
        raise CliError(f"this runner handles kind: glue recipes, got kind: {recipe.get('kind')!r}")
    cap = cap_config_of(recipe)
    task = get_task(recipe["task"])
    folder = task_folder(recipe.get("data_dir"), task)
    transformers = require_transformers()
    needs_teacher = cap.use_distill or cap.use_fic
    if needs_teacher:  # a wrong teacher fails before anything is loaded
        check_teacher(recipe.get("teacher"), task)
    student = load_classifier(recipe.get("model"), task, "model")
    teacher = load_classifier(recipe.get("teacher"), task, "teacher") if needs_teacher else None
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(recipe.get("tokenizer") or recipe["model"]))
    max_len = int(recipe.get("max_seq_length", 128))
    train = encode(tokenizer, task, load_task_examples(task, folder, "train"), max_len)
    dev = encode(tokenizer, task, load_task_examples(task, folder, "dev"), max_len)
    collate = DataCollatorWithPadding(pad_token_id=tokenizer.pad_token_id or 0)
    eval_fn = make_eval_fn(task, dev, collate, int(recipe.get("eval_batch_size", 64)))
    return prune_and_record(recipe, task.name, cap, student, teacher, train, collate, eval_fn, progress_bar)


def prune_and_record(recipe, task_name: str, cap: CapConfig, student, teacher, train, collate, eval_fn,
                     progress_bar: bool) -> dict[str, Any]:  # fmt: skip
    """Move the models to the run's device, prune, and write ``output_dir/cap_results.json`` (glue and squad)."""
    from alicemind.cap.loop import prune_model

    output_dir = str(recipe.get("output_dir") or f"runs/cap-{task_name}")
    training = training_config_of(recipe, output_dir, progress_bar)
    device = torch.device("cuda" if torch.cuda.is_available() and training.device in (None, "cuda") else "cpu")
    student.to(device)
    if teacher is not None:
        teacher.to(device)
    result = prune_model(student, cap, train, collate, training, teacher=teacher, eval_fn=eval_fn,
                         output_dir=output_dir, progress=progress_bar)  # fmt: skip
    result.pop("pruner", None)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    summary = {"task": task_name, "method": cap.method, "output_dir": output_dir, **result}
    (Path(output_dir) / "cap_results.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    return summary
