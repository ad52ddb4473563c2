"""Fine-tuning, evaluation and prediction for VQA, GQA and NLVR2 on core's Trainer.

``run_finetune(recipe)`` reads the recipe's ``task`` (vqa | gqa | nlvr2), builds the region-feature cache once,
fine-tunes, evaluates (VQA soft accuracy, GQA accuracy, NLVR2 accuracy) and writes ``output_dir/model``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.ops import build_scheduler
from alicemind.core.training import Trainer, TrainingConfig, move_to_device, seed_everything
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.structvbert.answers import build_answer_vocab
from alicemind.structvbert.config import StructVBertConfig
from alicemind.structvbert.data import TASKS, RegionCollator, encode_examples, read_task_file
from alicemind.structvbert.features import RegionFeatureError
from alicemind.structvbert.model import StructVBertForNLVR2, StructVBertForVQA
from alicemind.structvbert.optim import build_original_optimizer
from alicemind.structvbert.regions import RegionFeatures
from alicemind.structvbert.tokenization import StructVBertTokenizer

_NOT_IN_IDENTITY = ("training", "output_dir", "eval_batch_size")
LABEL2ANS_FILE = "trainval_label2ans.json"


@dataclass
class FinetuneResult:
    output_dir: Path
    model_dir: Path
    metrics: dict[str, float]
    initial: dict[str, float]
    log_history: list[dict[str, Any]]


def load_tokenizer(recipe: Mapping[str, Any]) -> StructVBertTokenizer:
    """The recipe's ``tokenizer`` folder, else the one in ``model``."""
    source = recipe.get("tokenizer") or recipe.get("model")
    if not source:
        raise CliError("give tokenizer=FOLDER (vocab.txt) or model=FOLDER holding one")
    try:
        return StructVBertTokenizer.from_folder(source)
    except FileNotFoundError as err:
        raise CliError(str(err)) from None


def open_features(recipe: Mapping[str, Any], *, progress_bar: bool = True) -> RegionFeatures:
    """The recipe's feature cache, built from ``features`` (TSV / NPZ folders / HDF5) the first time."""
    cache = recipe.get("feature_cache") or (
        Path(recipe["data_dir"]) / "feature_cache" if recipe.get("data_dir") else None
    )
    if cache is None:
        raise CliError("give feature_cache=FOLDER (and features=[...] to build it)")
    sources = recipe.get("features") or []
    try:
        if sources:
            return RegionFeatures.build(sources, cache, progress_bar=progress_bar)
        return RegionFeatures(cache)
    except (RegionFeatureError, FileNotFoundError) as err:
        raise CliError(str(err)) from None


def answer_vocabulary(recipe: Mapping[str, Any], train: Sequence[Mapping]) -> list[str]:
    """``answers`` of the recipe, else ``trainval_label2ans.json`` in ``data_dir``, else the training answers."""
    if recipe.get("answers"):
        return list(recipe["answers"])
    given = Path(recipe["data_dir"]) / LABEL2ANS_FILE
    if given.is_file():
        return list(json.loads(given.read_text(encoding="utf-8")))
    return build_answer_vocab([e["label"] for e in train if "label" in e])


def build_model(recipe: Mapping[str, Any], task: str, tokenizer, answers: list[str] | None):
    model_class = StructVBertForNLVR2 if task == "nlvr2" else StructVBertForVQA
    overrides = dict(recipe.get("model_config") or {})
    if answers is not None:
        overrides["answers"] = answers
    if recipe.get("model"):
        extra = {"answer_table": recipe["answer_table"]} if recipe.get("answer_table") and answers else {}
        return model_class.from_pretrained(recipe["model"], **overrides, **extra)
    scratch = recipe.get("scratch_config")
    if not scratch:
        raise CliError("give model=CHECKPOINT, or scratch_config=PRESET|config.json to start from random weights")
    config = StructVBertConfig.from_pretrained(scratch, **{"vocab_size": tokenizer.vocab_size, **overrides})
    return model_class(config)


def make_loader(encoded, collate, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(list(encoded), batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator)


@torch.no_grad()
def predict_logits(model, loader) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in loader:
        batch = move_to_device(batch, device)
        batch.pop("labels", None)
        out.append(model(**batch).logits.float().cpu())
    return torch.cat(out)


def evaluate(model, task: str, examples: Sequence[Mapping], loader) -> dict[str, float]:
    """VQA: soft accuracy (mean of ``label[argmax answer]``); GQA: accuracy; NLVR2: accuracy."""
    logits = predict_logits(model, loader)
    picked = logits.argmax(-1).tolist()
    if task == "nlvr2":
        correct = [int(p == int(e["label"])) for p, e in zip(picked, examples)]
        return {"accuracy": sum(correct) / max(len(correct), 1)}
    answers = model.config.answers
    scores = [float(e.get("label", {}).get(answers[p], 0.0)) for p, e in zip(picked, examples)]
    return {"soft_accuracy" if task == "vqa" else "accuracy": sum(scores) / max(len(scores), 1)}


def _split_files(data_dir: Path, names) -> list[Path]:
    return [data_dir / f"{n}.json" for n in ([names] if isinstance(names, str) else names)]


def _task(recipe: Mapping[str, Any]) -> str:
    task = recipe.get("task")
    if task not in TASKS:
        raise CliError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    return task


def prepare(recipe: Mapping[str, Any], model, tokenizer, features, split_files: Sequence[Path], task: str):
    """Read and encode ``split_files``; returns the examples (with their images in the cache) and the collator."""
    examples = [e for f in split_files for e in read_task_file(f, task)]
    images = ("img0", "img1") if task == "nlvr2" else ("img_id",)
    kept = [e for e in examples if all(e[k] in features for k in images)]  # as the original, skip unseen images
    if not kept:
        raise CliError(f"no example of {[str(f) for f in split_files]} has its image in the feature cache")
    cfg = model.config
    index = {a: i for i, a in enumerate(cfg.answers)} if cfg.answers else None
    max_len = int(recipe.get("max_text_length") or cfg.max_text_length)
    encoded = encode_examples(tokenizer, kept, task, max_length=max_len, answer_index=index)
    collate = RegionCollator(features, max_objects=int(recipe.get("max_objects") or cfg.max_objects),
                             max_length=max_len, num_answers=cfg.num_answers,
                             pad_to_batch=bool(recipe.get("pad_to_batch")),
                             mask_padded_regions=bool(recipe.get("mask_padded_regions")),
                             add_box_size=cfg.visual_pos_dim == 5)  # fmt: skip
    return kept, encoded, collate


def run_finetune(recipe: dict[str, Any], *, progress_bar: bool = True) -> FinetuneResult:
    """Fine-tune as the recipe says; writes ``output_dir/model`` (weights + tokenizer) and ``eval_results.json``."""
    task = _task(recipe)
    if not recipe.get("data_dir") or not Path(recipe["data_dir"]).is_dir():
        raise CliError(f"data_dir {recipe.get('data_dir')!r} is not a folder")
    data_dir = Path(recipe["data_dir"])
    tokenizer = load_tokenizer(recipe)
    features = open_features(recipe, progress_bar=progress_bar)
    train_files = _split_files(data_dir, recipe.get("train_splits") or "train")
    eval_files = _split_files(data_dir, recipe.get("eval_split") or "valid")
    answers = None
    if task != "nlvr2":
        answers = answer_vocabulary(recipe, [e for f in train_files for e in read_task_file(f, task)])
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    seed_everything(train_cfg.seed)
    model = build_model(recipe, task, tokenizer, answers)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CliError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    if features.feature_dim != model.config.visual_feat_dim:
        raise CliError(
            f"the features have dimension {features.feature_dim}, the model takes {model.config.visual_feat_dim}"
        )
    _, train, collate = prepare(recipe, model, tokenizer, features, train_files, task)
    dev_examples, dev, _ = prepare(recipe, model, tokenizer, features, eval_files, task)
    output_dir = Path(recipe.get("output_dir") or f"runs/{task}")
    train_cfg.output_dir = str(output_dir)
    loader = make_loader(train, collate, train_cfg.per_device_batch_size or 32, shuffle=True, seed=train_cfg.seed)
    dev_loader = make_loader(dev, collate, int(recipe.get("eval_batch_size") or 256))

    def eval_fn(m):
        return evaluate(m, task, dev_examples, dev_loader)

    optimizer = scheduler = None
    if (recipe.get("optimizer") or "bertadam") == "bertadam":
        optimizer = build_original_optimizer(model, lr=train_cfg.lr, eps=train_cfg.adam_eps,
                                             weight_decay=train_cfg.weight_decay, betas=train_cfg.adam_betas)  # fmt: skip
        steps = train_cfg.max_steps or len(loader) // train_cfg.gradient_accumulation_steps * train_cfg.num_epochs
        scheduler = build_scheduler(optimizer, train_cfg.scheduler, num_training_steps=steps,
                                    warmup_steps=train_cfg.warmup_steps, warmup_ratio=train_cfg.warmup_ratio)  # fmt: skip
    initial = eval_fn(model)
    files = {f"train{i}": f for i, f in enumerate(train_files)}
    identity = recipe_identity(recipe, files=files, vocab=tokenizer.get_vocab(), exclude=_NOT_IN_IDENTITY,
                               distributions=("alicemind-structvbert",))  # fmt: skip
    trainer = Trainer(model, train_cfg, loader, eval_fn=eval_fn, optimizer=optimizer, scheduler=scheduler,
                      run_identity=identity)  # fmt: skip
    state = trainer.train()
    metrics = eval_fn(trainer.model)
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (output_dir / "eval_results.json").write_text(json.dumps({"task": task, "metrics": metrics}, indent=1))
    return FinetuneResult(output_dir, model_dir, metrics, initial, list(state.log_history))


def predict_answers(model, tokenizer, features: RegionFeatures, questions: Sequence[Mapping], *, top_k: int = 5,
                    batch_size: int = 64) -> list[dict[str, Any]]:  # fmt: skip
    """``[{"img_id", "sent"(, "question_id")}]`` -> the ``top_k`` answers with their probabilities."""
    rows = [{"question_id": q.get("question_id", i), **q} for i, q in enumerate(questions)]
    missing = [q["img_id"] for q in rows if q["img_id"] not in features]
    if missing:
        raise CliError(f"images {missing[:5]} are not in the feature cache {features.path}")
    cfg = model.config
    encoded = encode_examples(tokenizer, rows, "vqa", max_length=cfg.max_text_length)
    collate = RegionCollator(features, max_objects=cfg.max_objects, max_length=cfg.max_text_length,
                             add_box_size=cfg.visual_pos_dim == 5)  # fmt: skip
    probs = torch.sigmoid(predict_logits(model, make_loader(encoded, collate, batch_size)))
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [{"question_id": q["question_id"], "img_id": q["img_id"], "question": q["sent"],
             "answers": [{"answer": cfg.answers[i], "score": round(float(s), 6)} for s, i in zip(ss, ii)]}
            for q, ss, ii in zip(rows, top.values.tolist(), top.indices.tolist())]  # fmt: skip
