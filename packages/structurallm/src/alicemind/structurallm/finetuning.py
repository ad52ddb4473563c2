"""Fine-tuning and evaluation on core's Trainer: FUNSD, DocVQA, RVL-CDIP (see :mod:`~alicemind.structurallm.tasks`).

Data: ``data_dir`` holds each split as ``{split}.jsonl`` (the generic document JSONL), a folder ``{split}/`` of
FUNSD annotations, FUNSD's own layout (``training_data/annotations``, ``testing_data/annotations``), or the original's
processed ``{split}.txt`` + ``{split}_box.txt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.cli.compiling import maybe_optimize
from alicemind.core.training import Trainer, TrainingConfig, seed_everything
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.structurallm import tasks
from alicemind.structurallm.config import StructuralLMConfig
from alicemind.structurallm.documents import Document, DocumentError, document_files, read_documents
from alicemind.structurallm.encoder import DocumentEncoder
from alicemind.structurallm.model import (
    StructuralLMForQuestionAnswering,
    StructuralLMForSequenceClassification,
    StructuralLMForTokenClassification,
)
from alicemind.structurallm.tokenization import StructuralLMTokenizer

MODEL_CLASSES = {"funsd": StructuralLMForTokenClassification, "docvqa": StructuralLMForQuestionAnswering,
                 "rvl-cdip": StructuralLMForSequenceClassification}  # fmt: skip
FUNSD_FOLDERS = {"train": "training_data", "test": "testing_data"}
_NOT_IN_IDENTITY = ("training", "output_dir", "eval_batch_size")


@dataclass
class FinetuneResult:
    output_dir: Path
    model_dir: Path
    metrics: dict[str, float]
    initial: dict[str, float]
    log_history: list[dict[str, Any]]


def split_path(data_dir: str | Path, split: str) -> Path:
    """Where a split lives in ``data_dir`` (module doc)."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / f"{split}.jsonl", data_dir / split, data_dir / f"{split}.txt",
                      data_dir / FUNSD_FOLDERS.get(split, split) / "annotations"):  # fmt: skip
        if candidate.exists():
            return candidate
    raise CliError(
        f"{data_dir}: no {split}.jsonl, {split}/, {split}.txt or FUNSD {FUNSD_FOLDERS.get(split, split)}/annotations"
    )


def load_split(data_dir: str | Path, split: str, *, clamp: bool = True) -> tuple[Path, list[Document]]:
    """The documents of one split (coordinates outside the page are clipped: OCR boxes overshoot)."""
    path = split_path(data_dir, split)
    try:
        return path, read_documents(path, clamp=clamp)
    except DocumentError as err:
        raise CliError(str(err)) from None


def load_tokenizer(recipe: dict[str, Any]) -> StructuralLMTokenizer:
    """The recipe's ``tokenizer`` folder, else the one beside ``model``."""
    source = recipe.get("tokenizer") or recipe.get("model")
    if not source:
        raise CliError("give tokenizer=FOLDER (vocab.json + merges.txt) or model=FOLDER holding them")
    try:
        return StructuralLMTokenizer.from_pretrained(source)
    except FileNotFoundError as err:
        raise CliError(str(err)) from None


def task_labels(kind: str, recipe: dict[str, Any], train: list[Document]) -> list[str]:
    """The label set: the recipe's, else FUNSD's seven tags, or the training documents' classes (sorted)."""
    if recipe.get("labels"):
        return [str(x) for x in recipe["labels"]]
    if kind == "funsd":
        extra = sorted({t for d in train for t in d.labels or []} - set(tasks.FUNSD_LABELS))
        return tasks.FUNSD_LABELS + extra
    if kind == "rvl-cdip":
        return sorted({str(d.extra.get("label")) for d in train})
    return []


def build_encoder(recipe: dict[str, Any], tokenizer, model, labels: list[str]) -> DocumentEncoder:
    """The encoder a model was trained with (its label ids, its tables' limits)."""
    max_len = min(int(recipe.get("max_seq_length") or 512), model.config.max_tokens)
    return DocumentEncoder(tokenizer, max_length=max_len, stride=int(recipe.get("doc_stride") or 128),
                           max_pos_bbox=model.config.bbox_vocab_size - 1,
                           label2id={lab: i for i, lab in enumerate(labels)})  # fmt: skip


def _kind(recipe: dict[str, Any]) -> str:
    kind = recipe.get("kind")
    if kind not in tasks.KINDS:
        raise CliError(f"recipe kind {kind!r} is not one of {', '.join(tasks.KINDS)}")
    return kind


def _build_model(kind: str, recipe: dict[str, Any], tokenizer, labels: list[str]):
    head = {"num_labels": max(len(labels), 2), "id2label": {str(i): x for i, x in enumerate(labels)}} if labels else {}
    overrides = {**dict(recipe.get("model_config") or {}), **head}
    if recipe.get("model"):
        return MODEL_CLASSES[kind].from_pretrained(recipe["model"], **overrides)
    scratch = recipe.get("scratch_config")
    if not scratch:
        raise CliError("give model=CHECKPOINT, or scratch_config=PRESET|config.json to start from random weights")
    config = StructuralLMConfig.from_pretrained(scratch, **{"vocab_size": tokenizer.vocab_size, **overrides})
    return MODEL_CLASSES[kind](config)


def run_finetune(recipe: dict[str, Any], *, progress_bar: bool = True) -> FinetuneResult:
    """Fine-tune as the recipe says; writes ``output_dir/model`` (weights + tokenizer) and ``eval_results.json``."""
    kind = _kind(recipe)
    data_dir = recipe.get("data_dir")
    if not data_dir or not Path(data_dir).is_dir():
        raise CliError(f"data_dir {data_dir!r} is not a folder")
    tokenizer = load_tokenizer(recipe)
    train_path, train_docs = load_split(data_dir, "train")
    split = recipe.get("eval_split") or "test"
    _, eval_docs = load_split(data_dir, split)
    labels = task_labels(kind, recipe, train_docs)
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    seed_everything(train_cfg.seed)
    output_dir = Path(recipe.get("output_dir") or f"runs/{kind}")
    train_cfg.output_dir = str(output_dir)
    model = _build_model(kind, recipe, tokenizer, labels)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CliError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    encoder = build_encoder(recipe, tokenizer, model, labels)
    try:
        train = tasks.encode_for_training(kind, encoder, train_docs, encoder.label2id)
    except (DocumentError, ValueError) as err:
        raise CliError(str(err)) from None
    id2label = dict(enumerate(labels))
    eval_batch = int(recipe.get("eval_batch_size") or 8)

    def eval_fn(m):
        return tasks.evaluate(kind, m, encoder, eval_docs, id2label, batch_size=eval_batch)

    loader = DataLoader(train, batch_size=train_cfg.per_device_batch_size or 8, shuffle=True,
                        collate_fn=tasks.collator(kind, encoder),
                        generator=torch.Generator().manual_seed(train_cfg.seed))  # fmt: skip
    identity = recipe_identity(recipe, files=document_files(train_path), vocab=tokenizer.get_vocab(),
                               exclude=_NOT_IN_IDENTITY, distributions=("alicemind-structurallm",))  # fmt: skip
    initial = eval_fn(model)
    trainer = Trainer(model, train_cfg, loader, eval_fn=eval_fn, run_identity=identity)
    state = trainer.train()
    metrics = eval_fn(trainer.model)
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (output_dir / "eval_results.json").write_text(json.dumps({"split": split, "metrics": metrics}, indent=1))
    return FinetuneResult(output_dir, model_dir, metrics, initial, list(state.log_history))


def load_finetuned(kind: str, model_dir: str | Path, recipe: dict[str, Any] | None = None):
    """A fine-tuned folder -> (model, encoder, id2label), the labels read from its ``config.json``."""
    recipe = dict(recipe or {})
    tokenizer = load_tokenizer({"model": str(model_dir), **{k: v for k, v in recipe.items() if k == "tokenizer"}})
    model = MODEL_CLASSES[kind].from_pretrained(model_dir)
    id2label = {int(k): v for k, v in (model.config.id2label or {}).items()}
    labels = [id2label[i] for i in sorted(id2label)] if kind != "docvqa" else []
    encoder = build_encoder(recipe, tokenizer, model, labels)
    return maybe_optimize(model), encoder, id2label  # compiled under --compile


def run_evaluate(recipe: dict[str, Any], model_dir: str | Path, split: str = "test") -> dict[str, float]:
    """The recipe's metric of a fine-tuned model on one split of ``data_dir``."""
    kind = _kind(recipe)
    model, encoder, id2label = load_finetuned(kind, model_dir, recipe)
    _, docs = load_split(recipe.get("data_dir") or ".", split)
    return tasks.evaluate(kind, model, encoder, docs, id2label, batch_size=int(recipe.get("eval_batch_size") or 8))
