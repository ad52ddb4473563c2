"""``alicemind structvbert pretrain``: the multi-stage progressive schedule of the talk, stages as recipe data.

Each stage of the recipe's ``stages`` list names its tasks (mlm, mrfr, mrc, itm, qa), whether it is text-only
("horizontal": text first, then image-text pairs), its region cap ("vertical": 36, then 64, then 100 objects,
the highest-scoring ones kept) and its own training overrides. Stages run one after another on core's Trainer,
each from the previous stage's weights, in ``output_dir/stage-<name>``; held-out losses of every task the stage
trains are measured before and after it. Text-only stages read ``text_corpus`` (one sentence a line) when the
recipe names one, else the corpus's sentences.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.training import Trainer, TrainingConfig, move_to_device, seed_everything
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.structvbert.answers import build_answer_vocab
from alicemind.structvbert.config import StructVBertConfig
from alicemind.structvbert.data import RegionCollator
from alicemind.structvbert.finetuning import load_tokenizer, open_features
from alicemind.structvbert.model import StructVBertForPreTraining
from alicemind.structvbert.pretraining_data import PretrainCollator

_NOT_IN_IDENTITY = ("training", "output_dir", "stages", "eval_batches")


@dataclass
class StageResult:
    name: str
    initial: dict[str, float]
    final: dict[str, float]
    num_examples: int
    log_history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PretrainResult:
    output_dir: Path
    model_dir: Path
    stages: list[StageResult]


def read_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Image-text pairs: a JSON list of ``{"img_id", "sent"(, "label": {answer: score})}`` (captions and QA)."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"no pre-training corpus at {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    bad = next((i for i, e in enumerate(data) if not isinstance(e, Mapping) or "sent" not in e), None)
    if bad is not None:
        raise CliError(f"{path}: example {bad} has no 'sent'")
    return data


def read_text_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Text-only data for the text-only stages: one sentence a line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"no text corpus at {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise CliError(f"{path}: no text")
    return [{"img_id": None, "sent": line} for line in lines]


@torch.no_grad()
def stage_losses(model, batches: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """The mean of every ``*_loss`` metric over fixed held-out batches."""
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    for batch in batches:
        metrics = model(**move_to_device(dict(batch), device)).metrics or {}
        for key, value in metrics.items():
            if key.endswith("_loss"):
                sums[key] = sums.get(key, 0.0) + float(value)
    return {k: v / len(batches) for k, v in sums.items()}


def _stage_collator(recipe, stage, tokenizer, features, answers, max_length, seed, image_sentences=None):
    masking = dict(recipe.get("masking") or {})
    regions = None
    if not stage.get("text_only"):
        regions = RegionCollator(features, max_objects=int(stage.get("max_objects") or 100), max_length=max_length,
                                 pad_to_batch=bool(recipe.get("pad_to_batch")),
                                 mask_padded_regions=bool(recipe.get("mask_padded_regions")),
                                 warn_on_cut=False)  # fmt: skip
    collate = PretrainCollator(tokenizer, regions, stage.get("tasks") or ["mlm"], answers=answers, seed=seed,
                               image_sentences=image_sentences, **masking)  # fmt: skip
    collate.max_length = max_length
    return collate


def _build_model(recipe, tokenizer, answers, features) -> StructVBertForPreTraining:
    overrides = {**dict(recipe.get("model_config") or {}), "answers": answers or None}
    if recipe.get("model"):
        return StructVBertForPreTraining.from_pretrained(recipe["model"], **overrides)
    scratch = recipe.get("scratch_config")
    if not scratch:
        raise CliError("give model=CHECKPOINT, or scratch_config=PRESET|config.json to start from random weights")
    dims = {"visual_feat_dim": features.feature_dim} if features is not None else {}
    return StructVBertForPreTraining(
        StructVBertConfig.from_pretrained(scratch, **{"vocab_size": tokenizer.vocab_size, **dims, **overrides})
    )


def run_pretraining(recipe: dict[str, Any], *, progress_bar: bool = True) -> PretrainResult:
    """Run every stage of the recipe; writes ``output_dir/model`` (weights + tokenizer) and ``stages.json``."""
    stages = list(recipe.get("stages") or [])
    if not stages:
        raise CliError("the recipe lists no stages")
    names = [s.get("name") for s in stages]
    if None in names or len(set(names)) != len(names):
        raise CliError(f"every stage needs a unique name, got {names}")
    tokenizer = load_tokenizer(recipe)
    examples = read_corpus(recipe.get("corpus") or "")
    needs_regions = any(not s.get("text_only") for s in stages)
    features = open_features(recipe, progress_bar=progress_bar) if needs_regions else None
    if features is not None:
        examples = [e for e in examples if e.get("img_id") in features]
        if not examples:
            raise CliError("no corpus example has its image in the feature cache")
    answers = build_answer_vocab([e["label"] for e in examples if e.get("label")])
    image_sentences: dict[str, set[str]] = {}  # every sentence each image is paired with: never its ITM negative
    for e in examples:
        image_sentences.setdefault(e.get("img_id"), set()).add(e["sent"])
    base_training = dict(recipe.get("training") or {})
    seed_everything(int(base_training.get("seed", 42)))
    model = _build_model(recipe, tokenizer, answers, features)
    max_length = int(recipe.get("max_text_length") or model.config.max_text_length)
    held_out = int(recipe.get("eval_examples") or 0)
    shuffled = random.Random(int(base_training.get("seed", 42))).sample(examples, len(examples))
    eval_set, train_set = (shuffled[:held_out], shuffled[held_out:]) if held_out else (shuffled, shuffled)
    text_only = read_text_corpus(recipe["text_corpus"]) if recipe.get("text_corpus") else []
    output_dir = Path(recipe.get("output_dir") or "runs/structvbert-pretrain")
    results = []
    for index, stage in enumerate(stages):
        own = dict(stage.get("training") or {})
        base = dict(base_training)
        if {"max_steps", "num_epochs"} & set(own):  # a stage's length replaces the base length, whichever it is
            base.pop("max_steps", None), base.pop("num_epochs", None)
        training = {"progress_bar": progress_bar, **base, **own}
        cfg = TrainingConfig.from_dict(training)
        cfg.output_dir = str(output_dir / f"stage-{stage['name']}")
        seed = cfg.seed + index
        eval_collate = _stage_collator(recipe, stage, tokenizer, features, answers, max_length, seed=10_000 + seed,
                                       image_sentences=image_sentences)  # fmt: skip
        batch_size = cfg.per_device_batch_size or 32
        stage_eval, stage_train = eval_set, train_set
        if stage.get("text_only") and text_only:
            stage_eval, stage_train = text_only[:held_out] or text_only, text_only[held_out:] or text_only
        eval_batches = [eval_collate(stage_eval[i : i + batch_size]) for i in range(0, len(stage_eval), batch_size)]
        collate = _stage_collator(recipe, stage, tokenizer, features, answers, max_length, seed=seed,
                                  image_sentences=image_sentences)  # fmt: skip
        loader = DataLoader(stage_train, batch_size=batch_size, shuffle=True, collate_fn=collate,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip
        initial = stage_losses(model, eval_batches)
        identity = recipe_identity({**recipe, "stage": stage, "stage_index": index}, vocab=tokenizer.get_vocab(),
                                   exclude=_NOT_IN_IDENTITY, distributions=("alicemind-structvbert",))  # fmt: skip
        trainer = Trainer(model, cfg, loader, run_identity=identity)
        state = trainer.train()
        model = trainer.model
        final = stage_losses(model, eval_batches)
        results.append(StageResult(stage["name"], initial, final, len(stage_train), list(state.log_history)))
    model_dir = output_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    summary = [{"stage": r.name, "initial": r.initial, "final": r.final} for r in results]
    (output_dir / "stages.json").write_text(json.dumps(summary, indent=1))
    return PretrainResult(output_dir, model_dir, results)
