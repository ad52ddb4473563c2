"""GLUE/CLUE fine-tuning of StructBERT, single- or multi-task, and evaluation / test-set prediction.

Multi-task follows the original ``run_classifier_multi_task.py``: one classifier per task over the pooled [CLS],
the tasks' training examples shuffled together so batches mix tasks, each row's loss routed to its own head by
``task_ids``. Your own files come in through ``kind: classify|regress`` recipes (core's ``own_task``), token
tagging and QA through ``kind: tag|qa`` (``finetuning_spans``).

A fine-tuned folder describes itself: ``config.json`` carries ``id2label``/``label2id`` and ``task_specs`` (what
each head was trained on), so ``evaluate`` and ``predict`` need nothing else. A single-task head is saved as
``classifier.weight``/``classifier.bias`` (transformers' ``BertForSequenceClassification`` loads it); several tasks
keep one ``classifier.{k}.*`` head each (our layout, ``classifier_layout: multi-task`` in config.json).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.cli.compiling import inference_buckets, maybe_optimize
from alicemind.core.data import (
    DataCollatorWithPadding,
    Example,
    LengthBucketSampler,
    TaskSpec,
    get_task,
    load_task_examples,
    own_task,
    read_examples,
    task_from_dict,
    task_to_dict,
)
from alicemind.core.data.own_data import SUFFIXES
from alicemind.core.data.tasks import is_registered, task_file
from alicemind.core.io import register_saved_files
from alicemind.core.metrics import glue_metrics
from alicemind.core.training import Trainer, TrainerCallback, TrainingConfig, move_to_device, seed_everything
from alicemind.core.training.run_manifest import RunIdentity, recipe_identity
from alicemind.structbert import demo as _demo  # noqa: F401  (registers the demo's task, demo-topics)
from alicemind.structbert.config import StructBertConfig
from alicemind.structbert.model import StructBertForSequenceClassification
from alicemind.structbert.tokenization import StructBertTokenizer

logger = logging.getLogger(__name__)

TASKS_FILE = "tasks.json"
register_saved_files(TASKS_FILE)  # part of a fine-tuned model folder: a later save may replace it
RECIPE_KEYS = {
    "task", "data_dir", "model", "tokenizer", "scratch_config", "model_config", "output_dir", "max_seq_length",
    "eval_batch_size", "eval_split", "fast_train", "child_tuning", "reserve_p", "adversarial", "training",
    # your own files (kind: classify | regress | tag | qa)
    "kind", "task_name", "train", "dev", "test", "format", "header", "columns", "labels", "metrics",
}  # fmt: skip
OWN_KINDS = ("classify", "regress")
SPAN_KINDS = ("tag", "qa")


@dataclass
class FinetuneResult:
    """The fine-tuned folder, the final dev metrics per task and the training log."""

    output_dir: Path
    model_dir: Path
    metrics: dict[str, dict[str, float]]
    log_history: list[dict[str, float]] = field(default_factory=list)
    tasks: list[TaskSpec] = field(default_factory=list)


def _norm(name: str) -> str:
    return re.sub(r"[-_\s]", "", name.lower()).removesuffix("public")


def resolve_tasks(spec: str | Sequence[str] | None) -> list[TaskSpec]:
    """``"mnli"``, ``"mnli,qqp"`` or a list: the registered task specs (an unknown name lists the known ones)."""
    names = spec.split(",") if isinstance(spec, str) else list(spec or [])
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise CliError("no task given: add task=NAME (or task=a,b for multi-task)")
    tasks = [get_task(n) for n in names]
    if len({t.name for t in tasks}) != len(tasks):
        raise CliError(f"task list {names} names a task twice")
    return tasks


def recipe_tasks(recipe: dict[str, Any]) -> list[TaskSpec]:
    """The tasks a recipe trains: registered ``task`` name(s), or with ``kind: classify|regress`` one task over
    your own files (``data_dir`` / ``train`` / ``dev``, ``columns``, ``labels``), its label set stated in the log."""
    kind = recipe.get("kind")
    if not kind:
        return resolve_tasks(recipe.get("task"))
    if kind not in OWN_KINDS:
        raise CliError(f"kind={kind!r} is not a sequence-classification kind; use one of {', '.join(OWN_KINDS)}")
    if recipe.get("task"):
        raise CliError("give either task=NAME (a registered task) or kind=classify|regress (your own files)")
    task = own_task(
        kind,
        data_dir=recipe.get("data_dir"),
        files={split: recipe.get(split) for split in ("train", "dev", "test")},
        columns=recipe.get("columns"),
        labels=recipe.get("labels"),
        header=recipe.get("header"),
        format=recipe.get("format") or "auto",
        name=recipe.get("task_name"),
        metrics=recipe.get("metrics"),
    )
    if task.labels is not None:
        how = "as given" if recipe.get("labels") else "sorted"
        logger.warning("task %s: %d labels (%s, from %s): %s", task.name, task.num_labels, how,
                       task.files["train"], ", ".join(task.labels))  # fmt: skip
    return [task]


def task_data_dir(data_dir: str | Path | dict | None, task: TaskSpec) -> Path:
    """The folder of ``task``: ``data_dir`` itself, or its sub-folder named after the task (``MNLI``,
    ``afqmc_public``, ...; any case), or ``data_dir[task]`` when a mapping is given. A task over your own files
    names its files itself (relative ones under ``data_dir``)."""
    if not is_registered(task):
        return Path(data_dir) if isinstance(data_dir, (str, Path)) else Path.cwd()
    if data_dir is None:
        raise CliError("no data directory given: add data_dir=PATH")
    if isinstance(data_dir, dict):
        match = [v for k, v in data_dir.items() if _norm(k) == _norm(task.name)]
        if not match:
            raise CliError(f"data_dir has no entry for task {task.name} (entries: {', '.join(data_dir)})")
        data_dir = match[0]
    base = Path(data_dir)
    if not base.is_dir():
        raise CliError(f"data directory {base} does not exist")
    for child in sorted(base.iterdir()):
        if child.is_dir() and _norm(child.name) == _norm(task.name):
            return child
    return base


def encode_examples(
    tokenizer: StructBertTokenizer,
    examples: Sequence[Example],
    task: TaskSpec,
    task_id: int,
    max_seq_length: int,
    *,
    with_labels: bool = True,
) -> list[dict[str, Any]]:
    """``[CLS] a [SEP] b [SEP]`` features (longest-first truncation) with float ``labels`` and ``task_ids``."""
    if not examples:
        return []
    pairs = [e.text_b is not None for e in examples]
    if any(pairs) and not all(pairs):
        raise ValueError(f"task {task.name}: some examples have a second text and some do not")
    enc = tokenizer(
        [e.text_a for e in examples],
        [e.text_b for e in examples] if all(pairs) else None,
        truncation=True,
        max_length=max_seq_length,
    )
    features = []
    for i, example in enumerate(examples):
        feature = {"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i], "task_ids": task_id}
        if with_labels:
            feature["labels"] = float(task.label_id(example.label))
        features.append(feature)
    return features


def _collator(tokenizer: StructBertTokenizer, max_length: int | None = None) -> DataCollatorWithPadding:
    # Labels are floats for every task (regression values and class ids alike) so that mixed-task batches stack;
    # the model casts class ids back to long. Under --compile, widths fall into a few buckets (one graph each).
    return DataCollatorWithPadding(tokenizer.pad_token_id, bucket_lengths=inference_buckets(max_length))


@torch.no_grad()
def predict_task(
    model: StructBertForSequenceClassification,
    features: list[dict[str, Any]],
    task_id: int,
    collate: DataCollatorWithPadding,
    batch_size: int = 32,
) -> np.ndarray:
    """Raw outputs of head ``task_id`` for ``features``: logits ``[N, C]`` or regression values ``[N]``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")  # little padding per batch
    chunks = []
    for start in range(0, len(order), batch_size):
        rows = [{k: v for k, v in features[i].items() if k != "labels"} for i in order[start : start + batch_size]]
        batch = move_to_device(collate(rows), device)
        batch.pop("task_ids")
        logits = model(**batch).logits
        logits = logits[task_id] if isinstance(logits, list) else logits
        chunks.append(logits.float().cpu())
    out = torch.cat(chunks).numpy() if chunks else np.zeros((0, 1), np.float32)
    model.train(was_training)
    out = out[np.argsort(order)]
    return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out


def evaluate_tasks(
    model: StructBertForSequenceClassification,
    tokenizer: StructBertTokenizer,
    tasks: Sequence[TaskSpec],
    data_dir: str | Path | dict,
    *,
    split: str = "dev",
    max_seq_length: int = 128,
    batch_size: int = 32,
    input_file: str | Path | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, tuple[list[Example], np.ndarray]]]:
    """Metrics per task on ``split`` (or on the labelled ``input_file``, for a one-task model) and, per task, its
    examples with the raw model outputs."""
    metrics, outputs = {}, {}
    collate = _collator(tokenizer, max_seq_length)
    if input_file is not None and len(tasks) != 1:
        raise CliError(f"--input evaluates a one-task model; this one has {len(tasks)} tasks (use --data-dir)")
    for task_id, task in enumerate(tasks):
        if input_file is not None:
            examples = read_examples(task, _existing(input_file), "dev")
        else:
            examples = load_task_examples(task, task_data_dir(data_dir, task), split)
        if not examples:
            raise CliError(f"{task.name} {split} split has no examples")
        features = encode_examples(tokenizer, examples, task, task_id, max_seq_length)
        raw = predict_task(model, features, task_id, collate, batch_size)
        labels = np.array([f["labels"] for f in features])
        metrics[task.name] = glue_metrics(task, raw, labels if task.is_regression else labels.astype(int))
        outputs[task.name] = (examples, raw)
    return metrics, outputs


def prediction_strings(task: TaskSpec, raw: np.ndarray, decimals: int | None = 3) -> list[str]:
    """Model outputs as the task's label strings (regression: ``decimals`` places, None = exact)."""
    if task.is_regression:
        values = np.asarray(raw, dtype=float).reshape(-1).tolist()
        return [repr(v) if decimals is None else f"{v:.{decimals}f}" for v in values]
    return [task.labels[i] for i in np.asarray(raw).argmax(-1)]


def load_tokenizer(path: str | Path | None, fallback: str | Path | None) -> StructBertTokenizer:
    """The tokenizer folder or vocab.txt at ``path`` (else beside the model at ``fallback``)."""
    for candidate in (path, fallback):
        if candidate is None:
            continue
        p = Path(candidate)
        if p.is_file():
            return StructBertTokenizer.from_vocab_file(p)
        if (p / "vocab.txt").is_file() or (p / "tokenizer.json").is_file():
            return StructBertTokenizer.from_pretrained(p)
    raise CliError(f"no tokenizer found (looked at tokenizer={path!r} and model={fallback!r}); give tokenizer=PATH")


def _existing(path: str | Path) -> Path:
    if not Path(path).is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    return Path(path)


def saved_tasks(model_dir: str | Path) -> tuple[list[TaskSpec], dict[str, Any]]:
    """The tasks of a fine-tuned folder (``task_specs`` in config.json, else the names in ``tasks.json``) and its
    ``tasks.json`` settings (``max_seq_length``)."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    info = json.loads((model_dir / TASKS_FILE).read_text()) if (model_dir / TASKS_FILE).is_file() else {}
    if config.get("task_specs"):
        return [task_from_dict(d) for d in config["task_specs"]], info
    if info.get("tasks"):
        return resolve_tasks(info["tasks"]), info
    raise CliError(f"{model_dir} is not a fine-tuned StructBERT folder (no task_specs in config.json); run finetune")


def load_finetuned(model_dir: str | Path) -> tuple[StructBertForSequenceClassification, list[TaskSpec]]:
    """A folder written by :func:`run_finetune`: the model (compiled under ``--compile``) and each head's task."""
    tasks, _ = saved_tasks(model_dir)
    return maybe_optimize(StructBertForSequenceClassification.from_pretrained(Path(model_dir))), tasks


def describe_heads(config: StructBertConfig, tasks: Sequence[TaskSpec]) -> None:
    """Write the tasks into ``config`` (``task_specs``; ``id2label``/``label2id`` for a single classifier).

    Files of your own tasks are stored by split name (``dev.tsv`` ...), so a later ``--data-dir`` finds its own."""
    specs = []
    for task in tasks:
        spec = task_to_dict(task)
        if not spec.get("registered"):
            spec["trained_on"] = {split: str(f) for split, f in task.files.items()}
            spec["files"] = {split: [f"{split}{suffix}" for suffix in SUFFIXES] for split in ("train", "dev", "test")}
        specs.append(spec)
    config.task_specs = specs
    single = len(tasks) == 1 and tasks[0].labels is not None
    config.id2label = {str(i): label for i, label in enumerate(tasks[0].labels)} if single else None
    config.label2id = {label: i for i, label in enumerate(tasks[0].labels)} if single else None
    if len(tasks) > 1:
        config.extra["classifier_layout"] = "multi-task"
        logger.warning("multi-task model: one head per task saved as classifier.{k}.* (our layout; transformers' "
                       "BertForSequenceClassification does not read it)")  # fmt: skip


def _build_model(recipe: dict[str, Any], tasks: list[TaskSpec]) -> StructBertForSequenceClassification:
    # One task: a plain head (num_labels, saved as classifier.weight/bias as transformers expects); several: one
    # head per task (task_num_labels, saved as classifier.{k}.*).
    if len(tasks) == 1:
        heads = {"num_labels": tasks[0].num_labels, "task_num_labels": None}
    else:
        heads = {"task_num_labels": [t.num_labels for t in tasks]}
    return _build_model_from(recipe, StructBertForSequenceClassification, heads)


def _build_model_from(recipe: dict[str, Any], model_class, heads: dict[str, Any]):
    """``model_class`` from the recipe's ``model`` checkpoint, or random from ``scratch_config``, with ``heads``
    and ``model_config`` applied to its config."""
    overrides = {**heads, **dict(recipe.get("model_config") or {})}
    if recipe.get("model"):
        path = Path(recipe["model"])
        if not path.exists():
            raise CliError(f"model {path} does not exist (give a checkpoint folder or file)")
        return model_class.from_pretrained(path, **overrides)
    scratch = recipe.get("scratch_config")
    if not scratch:
        raise CliError(
            "no model given: add model=CHECKPOINT (or scratch_config=PRESET|config.json to train from scratch)"
        )
    if Path(scratch).is_file():
        config = StructBertConfig.from_json_file(scratch, **overrides)
    else:
        config = StructBertConfig.from_preset(scratch, **overrides)
    return model_class(config)


def _callbacks(recipe: dict[str, Any], tasks: list[TaskSpec]) -> list[TrainerCallback]:
    callbacks: list[TrainerCallback] = []
    if recipe.get("child_tuning") or recipe.get("reserve_p") is not None:
        try:
            from alicemind.childtuning import child_tuning_from_recipe
        except ImportError:
            raise CliError("child_tuning needs alicemind-childtuning (pip install alicemind-childtuning)") from None
        try:
            callbacks.append(child_tuning_from_recipe(recipe, tasks[0].name))
        except ValueError as err:
            raise CliError(f"child_tuning: {err}") from None
    adv = dict(recipe.get("adversarial") or {})
    if adv.pop("enabled", False):
        from alicemind.structbert.adversarial import AdversarialCallback

        try:
            callbacks.append(AdversarialCallback(**adv))
        except TypeError as err:
            raise CliError(f"adversarial: {err}") from None
    return callbacks


def _train_loader(recipe, features, tokenizer, batch_size: int, seed: int) -> DataLoader:
    collate = _collator(tokenizer)
    if recipe.get("fast_train"):  # the original --fast_train: length-sorted batches, dynamic padding
        import os

        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        sampler = LengthBucketSampler([len(f["input_ids"]) for f in features], batch_size, seed=seed,
                                      num_replicas=world, rank=rank)  # fmt: skip
        return DataLoader(features, batch_sampler=sampler, collate_fn=collate)
    return DataLoader(features, batch_size=batch_size, shuffle=True, collate_fn=collate)


# Recipe keys that change no trained weight (the Trainer records `training` itself).
_NOT_IN_IDENTITY = ("training", "output_dir", "eval_batch_size")


def finetune_identity(recipe: dict[str, Any], train_files: dict[str, Any], tokenizer) -> RunIdentity:
    """What defines a fine-tuning run for ``output_dir/run.json``: the recipe's values, the training files' and
    the vocabulary's content hashes, so a rerun on other data into a used folder stops instead of resuming."""
    return recipe_identity(recipe, files=train_files, vocab=tokenizer.get_vocab(), exclude=_NOT_IN_IDENTITY,
                           distributions=("alicemind-structbert",))  # fmt: skip


def run_finetune(recipe: dict[str, Any], *, progress_bar: bool = True) -> FinetuneResult:
    """Fine-tune on one or several tasks as the recipe says, then evaluate on the dev split of each."""
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise CliError(f"unknown recipe key(s) {unknown}; known: {sorted(RECIPE_KEYS)}")
    if recipe.get("kind") in SPAN_KINDS:
        from alicemind.structbert.finetuning_spans import run_span_finetune

        return run_span_finetune(recipe, progress_bar=progress_bar)
    tasks = recipe_tasks(recipe)
    data_dir = recipe.get("data_dir")
    for task in tasks:
        task_data_dir(data_dir, task)  # fail on a missing folder before loading a model
    eval_split = recipe.get("eval_split") or "dev"
    eval_batch = int(recipe.get("eval_batch_size") or 32)
    missing = [t.name for t in tasks if eval_split not in t.files]
    if missing:
        raise CliError(f"no {eval_split} file for {', '.join(missing)}: add {eval_split}.tsv beside train.tsv "
                       f"(or {eval_split}=FILE)")  # fmt: skip
    for task in tasks:
        if not is_registered(task):  # a dev label the training file lacks fails now, not after training
            load_task_examples(task, task_data_dir(data_dir, task), eval_split)
    tokenizer = load_tokenizer(recipe.get("tokenizer"), recipe.get("model"))
    max_len = int(recipe.get("max_seq_length") or 128)
    features = []
    for task_id, task in enumerate(tasks):
        examples = load_task_examples(task, task_data_dir(data_dir, task), "train")
        features += encode_examples(tokenizer, examples, task, task_id, max_len)
    if not features:
        raise CliError(f"no training examples found for {', '.join(t.name for t in tasks)}")
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    seed_everything(train_cfg.seed)  # new heads (and a from-scratch model) are drawn from the run's seed
    model = _build_model(recipe, tasks)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CliError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    output_dir = Path(recipe.get("output_dir") or "runs/finetune")
    train_cfg.output_dir = str(output_dir)
    loader = _train_loader(recipe, features, tokenizer, train_cfg.per_device_batch_size or 32, train_cfg.seed)

    def eval_fn(m) -> dict[str, float]:
        per_task, _ = evaluate_tasks(m, tokenizer, tasks, data_dir, split=eval_split, max_seq_length=max_len,
                                     batch_size=eval_batch)  # fmt: skip
        flat = {f"{t}_{k}": v for t, d in per_task.items() for k, v in d.items() if k != "score"}
        flat["score"] = float(np.mean([d["score"] for d in per_task.values()]))
        return flat

    train_files = {f"{t.name}.train": task_file(t, task_data_dir(data_dir, t), "train") for t in tasks}
    trainer = Trainer(model, train_cfg, loader, eval_fn=eval_fn, callbacks=_callbacks(recipe, tasks),
                      run_identity=finetune_identity(recipe, train_files, tokenizer))  # fmt: skip
    state = trainer.train()
    metrics, _ = evaluate_tasks(trainer.model, tokenizer, tasks, data_dir, split=eval_split, max_seq_length=max_len,
                                batch_size=eval_batch)  # fmt: skip
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        describe_heads(trainer.model.config, tasks)
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (model_dir / TASKS_FILE).write_text(json.dumps({"tasks": [t.name for t in tasks], "max_seq_length": max_len}))
        (output_dir / "eval_results.json").write_text(json.dumps({"split": eval_split, "metrics": metrics}, indent=1))
    return FinetuneResult(output_dir, model_dir, metrics, list(state.log_history), tasks)


# GLUE's submission file names; CLUE's follow its baseline scripts (<task>_predict.json, OCNLI trained on 50k).
GLUE_SUBMISSION = {
    ("cola", "test"): "CoLA.tsv", ("sst-2", "test"): "SST-2.tsv", ("mrpc", "test"): "MRPC.tsv",
    ("sts-b", "test"): "STS-B.tsv", ("qqp", "test"): "QQP.tsv", ("mnli", "test_matched"): "MNLI-m.tsv",
    ("mnli", "test_mismatched"): "MNLI-mm.tsv", ("mnli", "ax"): "AX.tsv", ("qnli", "test"): "QNLI.tsv",
    ("rte", "test"): "RTE.tsv", ("wnli", "test"): "WNLI.tsv",
}  # fmt: skip
CLUE_SUBMISSION = {"ocnli": "ocnli_50k_predict.json"}


def submission_name(task: TaskSpec, split: str) -> str:
    """The file name the GLUE / CLUE leaderboards expect for ``task``'s ``split``."""
    if task.format == "jsonl":
        return CLUE_SUBMISSION.get(task.name, f"{task.name}_predict.json")
    return GLUE_SUBMISSION.get((task.name, split), f"{task.name}-{split}.tsv")


def _test_splits(task: TaskSpec, folder: Path) -> list[str]:
    if task.name == "mnli":
        splits = ["test_matched", "test_mismatched"]
        try:  # the diagnostic set, when it is there
            load_task_examples(task, folder, "ax")
            splits.append("ax")
        except FileNotFoundError:
            pass
        return splits
    return ["test"]


def run_evaluate(
    model_dir, data_dir, output: str | Path, *, split: str = "dev", batch_size: int = 32, input_file=None
) -> dict:
    """Evaluate a fine-tuned folder on ``split`` of each of its tasks (or on the labelled ``input_file``); write
    metrics JSON and per-task prediction TSVs (``guid, prediction, label``) beside it. Returns the metrics."""
    if _span_kind(model_dir):
        from alicemind.structbert.finetuning_spans import run_span_evaluate

        return run_span_evaluate(model_dir, data_dir, output, split=split, batch_size=batch_size, input_file=input_file)
    model, tasks = load_finetuned(model_dir)
    _, info = saved_tasks(model_dir)
    tokenizer = load_tokenizer(None, model_dir)
    metrics, outputs = evaluate_tasks(model, tokenizer, tasks, data_dir, split=split, input_file=input_file,
                                      max_seq_length=info.get("max_seq_length", 128), batch_size=batch_size)  # fmt: skip
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"model": str(model_dir), "split": split, "metrics": metrics}, indent=1))
    for task in tasks:
        examples, raw = outputs[task.name]
        rows = zip((e.guid for e in examples), prediction_strings(task, raw, None), (e.label for e in examples))
        lines = "".join(f"{g}\t{p}\t{y}\n" for g, p, y in rows)
        (output.parent / f"predictions_{task.name}_{split}.tsv").write_text("guid\tprediction\tlabel\n" + lines)
    return metrics


def _span_kind(model_dir) -> str | None:
    path = Path(model_dir) / "config.json"
    specs = json.loads(path.read_text()).get("task_specs") if path.is_file() else None
    kind = specs[0].get("kind") if specs else None
    return kind if kind in SPAN_KINDS else None


def run_predict(model_dir, data_dir, output_dir: str | Path, *, batch_size: int = 32) -> list[Path]:
    """Write leaderboard submission files for the test split(s) of each task of a fine-tuned folder: GLUE TSV
    ``index<TAB>prediction``, CLUE JSON lines ``{"id", "label"}``. Returns the files written."""
    model, tasks = load_finetuned(model_dir)
    _, info = saved_tasks(model_dir)
    tokenizer = load_tokenizer(None, model_dir)
    collate = _collator(tokenizer, info.get("max_seq_length", 128))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task_id, task in enumerate(tasks):
        folder = task_data_dir(data_dir, task)
        for split in _test_splits(task, folder):
            examples = load_task_examples(task, folder, split)
            features = encode_examples(tokenizer, examples, task, task_id, info.get("max_seq_length", 128),
                                       with_labels=False)  # fmt: skip
            preds = prediction_strings(task, predict_task(model, features, task_id, collate, batch_size))
            path = output_dir / submission_name(task, split)
            if task.format == "jsonl":
                ids = [int(e.guid) if e.guid.isdigit() else e.guid for e in examples]
                text = "".join(json.dumps({"id": i, "label": p}, ensure_ascii=False) + "\n" for i, p in zip(ids, preds))
            else:
                text = "index\tprediction\n" + "".join(f"{e.guid}\t{p}\n" for e, p in zip(examples, preds))
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def predict_rows(
    model_dir, input_path: str, output_path: str, *, batch_size: int = 32, fmt=None, task_name=None
) -> int:
    """One JSON line per input row (``-`` = stdin/stdout) from a fine-tuned folder alone; returns the row count."""
    if _span_kind(model_dir):
        from alicemind.structbert.finetuning_spans import predict_span_rows

        return predict_span_rows(model_dir, input_path, output_path, batch_size=batch_size)
    from alicemind.structbert.predicting import run_predict_stream

    return run_predict_stream(model_dir, input_path, output_path, batch_size=batch_size, fmt=fmt, task_name=task_name)
