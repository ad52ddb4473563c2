"""Fine-tuning: CLUE classification (pooled [CLS]) and NER with a CRF, on core's Trainer.

``run_finetune(recipe)`` reads the recipe's ``kind``: ``classify`` (a CLUE task registered in core, e.g. ``afqmc``)
or ``ner`` (CoNLL files: ``char<TAB>tag`` lines, a blank line between sentences, BIO or BMES tags).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.data import load_task_examples
from alicemind.core.data.own_spans import read_conll
from alicemind.core.data.tasks import get_task, task_file
from alicemind.core.metrics.spans import span_f1
from alicemind.core.training import Trainer, TrainingConfig, move_to_device, seed_everything
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.latticebert.config import LatticeBertConfig
from alicemind.latticebert.model import LatticeBertForSequenceClassification, LatticeBertForTokenClassification
from alicemind.latticebert.tokenization import LatticeBertTokenizer

_NOT_IN_IDENTITY = ("training", "output_dir", "eval_batch_size")
NER_FILES = ("train", "dev", "test")


@dataclass
class FinetuneResult:
    output_dir: Path
    model_dir: Path
    metrics: dict[str, float]
    initial: dict[str, float]
    log_history: list[dict[str, Any]]


def load_tokenizer(recipe: dict[str, Any]) -> LatticeBertTokenizer:
    """The recipe's ``tokenizer`` folder, else the one beside ``model``."""
    source = recipe.get("tokenizer") or recipe.get("model")
    if not source:
        raise CliError("give tokenizer=FOLDER (vocab.txt + lexicon.txt) or model=FOLDER holding them")
    try:
        return LatticeBertTokenizer.from_pretrained(source)
    except FileNotFoundError as err:
        raise CliError(str(err)) from None


def _build_model(model_class, recipe: dict[str, Any], tokenizer: LatticeBertTokenizer, **head: Any):
    overrides = {**dict(recipe.get("model_config") or {}), **head}
    if recipe.get("model"):
        return model_class.from_pretrained(recipe["model"], **overrides)
    scratch = recipe.get("scratch_config")
    if not scratch:
        raise CliError("give model=CHECKPOINT, or scratch_config=PRESET|config.json to start from random weights")
    config = LatticeBertConfig.from_pretrained(scratch, **{"vocab_size": tokenizer.vocab_size, **overrides})
    return model_class(config)


def _identity(recipe, files, tokenizer):
    return recipe_identity(recipe, files=files, vocab=tokenizer.get_vocab(), exclude=_NOT_IN_IDENTITY,
                           distributions=("alicemind-latticebert",))  # fmt: skip


def _batches(features: Sequence[dict], collate, batch_size: int):
    return DataLoader(list(features), batch_size=batch_size, shuffle=False, collate_fn=collate)


# -- classification ------------------------------------------------------------------------------------------------
def encode_classification(tokenizer, examples, task, max_length: int) -> list[dict[str, Any]]:
    """Examples -> encodings with label ids (lattice units truncated to ``max_length``)."""
    pairs = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    encodings = tokenizer.encode_batch([e.text_a for e in examples], pairs, max_length=max_length, truncation=True)
    return [{"encoding": enc, "label": task.label_id(e.label)} for enc, e in zip(encodings, examples)]


def classification_collator(tokenizer):
    def collate(features):
        batch = tokenizer.pad([f["encoding"] for f in features])
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch

    return collate


def evaluate_classification(model, loader) -> dict[str, float]:
    correct = total = 0
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for batch in loader:
            batch = move_to_device(batch, device)
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
            total += len(labels)
    return {"accuracy": correct / max(total, 1)}


# -- NER -----------------------------------------------------------------------------------------------------------
def encode_ner(tokenizer, sentences, labels: Sequence[str], max_length: int) -> list[dict[str, Any]]:
    index = {tag: i for i, tag in enumerate(labels)}
    features = []
    for sentence in sentences:
        enc, positions = tokenizer.encode_tagged(sentence.tokens, max_length=max_length, truncation=True)
        tags = [index[t] for t in sentence.tags[: len(positions)]] if sentence.tags else [0] * len(positions)
        features.append({"encoding": enc, "label_positions": positions, "tags": tags,
                         "num_words": len(sentence.tokens)})  # fmt: skip
    return features


def ner_collator(tokenizer):
    def collate(features):
        batch = tokenizer.pad([f["encoding"] for f in features])
        width = max(1, max(len(f["label_positions"]) for f in features))
        positions = torch.zeros(len(features), width, dtype=torch.long)
        mask = torch.zeros(len(features), width, dtype=torch.long)
        tags = torch.zeros(len(features), width, dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["label_positions"])
            positions[row, :n] = torch.tensor(f["label_positions"], dtype=torch.long)
            mask[row, :n] = 1
            tags[row, :n] = torch.tensor(f["tags"], dtype=torch.long)
        batch.update(label_positions=positions, label_mask=mask, labels=tags)
        return batch

    return collate


def predict_ner(model, loader, labels: Sequence[str], num_words: Sequence[int]) -> list[list[str]]:
    """Viterbi tags of every sentence; words cut by truncation are tagged ``O``."""
    model.eval()
    device = next(model.parameters()).device
    out: list[list[str]] = []
    with torch.no_grad():
        for batch in loader:
            batch = move_to_device(batch, device)
            batch.pop("labels", None)
            out += [[labels[t] for t in path] for path in model.decode(**batch)]
    return [tags + ["O"] * (n - len(tags)) for tags, n in zip(out, num_words)]


def evaluate_ner(model, loader, labels, sentences) -> dict[str, float]:
    """Entity-level precision/recall/F1 (exact type and boundaries, seqeval's default mode)."""
    predicted = predict_ner(model, loader, labels, [len(s.tokens) for s in sentences])
    return span_f1([_as_bioes(s.tags) for s in sentences], [_as_bioes(tags) for tags in predicted])


def _as_bioes(tags: Sequence[str]) -> list[str]:
    # BMES writes the inside of an entity as M-; the chunk rules read it as I-.
    return ["I" + t[1:] if t.startswith("M-") else t for t in tags]


def _ner_labels(recipe: dict[str, Any], sentences) -> list[str]:
    given = recipe.get("labels")
    if given:
        return list(given)
    tags = sorted({t for s in sentences for t in s.tags} - {"O"})
    return ["O", *tags]


# -- entry point ---------------------------------------------------------------------------------------------------
def run_finetune(recipe: dict[str, Any], *, progress_bar: bool = True) -> FinetuneResult:
    """Fine-tune as the recipe says; writes ``output_dir/model`` (weights + tokenizer) and ``eval_results.json``."""
    kind = recipe.get("kind", "classify")
    if kind not in ("classify", "ner"):
        raise CliError(f"unknown recipe kind {kind!r}: expected classify or ner")
    data_dir = recipe.get("data_dir")
    if not data_dir or not Path(data_dir).is_dir():
        raise CliError(f"data_dir {data_dir!r} is not a folder")
    data_dir = Path(data_dir)
    tokenizer = load_tokenizer(recipe)
    max_len = int(recipe.get("max_seq_length") or 128)
    eval_batch = int(recipe.get("eval_batch_size") or 32)
    split = recipe.get("eval_split") or "dev"
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    seed_everything(train_cfg.seed)
    output_dir = Path(recipe.get("output_dir") or "runs/finetune")
    train_cfg.output_dir = str(output_dir)
    batch_size = train_cfg.per_device_batch_size or 32
    if kind == "classify":
        task = get_task(recipe["task"])
        train = encode_classification(tokenizer, load_task_examples(task, data_dir, "train"), task, max_len)
        dev = encode_classification(tokenizer, load_task_examples(task, data_dir, split), task, max_len)
        collate = classification_collator(tokenizer)
        model = _build_model(LatticeBertForSequenceClassification, recipe, tokenizer, num_labels=task.num_labels,
                             id2label={str(i): lab for i, lab in enumerate(task.labels)})  # fmt: skip
        dev_loader = _batches(dev, collate, eval_batch)

        def eval_fn(m):
            return evaluate_classification(m, dev_loader)

        files = {"train": task_file(task, data_dir, "train")}
    else:
        paths = {name: _conll_file(data_dir, name) for name in ("train", split)}
        sentences = {name: read_conll(path) for name, path in paths.items()}
        labels = _ner_labels(recipe, sentences["train"])
        unknown = {t for s in sentences[split] for t in s.tags} - set(labels)
        if unknown:
            raise CliError(f"{paths[split]}: tags {sorted(unknown)} do not occur in {paths['train']}")
        train = encode_ner(tokenizer, sentences["train"], labels, max_len)
        dev = encode_ner(tokenizer, sentences[split], labels, max_len)
        collate = ner_collator(tokenizer)
        model = _build_model(LatticeBertForTokenClassification, recipe, tokenizer, num_labels=len(labels),
                             id2label={str(i): lab for i, lab in enumerate(labels)})  # fmt: skip
        dev_loader = _batches(dev, collate, eval_batch)

        def eval_fn(m):
            return evaluate_ner(m, dev_loader, labels, sentences[split])

        files = {"train": paths["train"]}
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CliError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(train_cfg.seed))  # fmt: skip
    initial = eval_fn(model)
    trainer = Trainer(model, train_cfg, loader, eval_fn=eval_fn, run_identity=_identity(recipe, files, tokenizer))
    state = trainer.train()
    metrics = eval_fn(trainer.model)
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (output_dir / "eval_results.json").write_text(json.dumps({"split": split, "metrics": metrics}, indent=1))
    return FinetuneResult(output_dir, model_dir, metrics, initial, list(state.log_history))


def _conll_file(data_dir: Path, split: str) -> Path:
    for suffix in (".txt", ".conll", ".bio", ".bmes", ".tsv", ".char.bmes"):
        path = data_dir / f"{split}{suffix}"
        if path.is_file():
            return path
    raise CliError(f"{data_dir}: no {split}.txt / .conll / .bio / .bmes file")
