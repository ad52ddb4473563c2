"""Pre-training: masked visual-language modelling (MVLM) plus cell position classification (CPC), on documents
in the JSONL format of :func:`~alicemind.structurallm.documents.read_documents_jsonl`.

MVLM masks ``masked_lm_prob`` of the word tokens (80 % ``<mask>``, 10 % a random token, 10 % kept) and keeps their
cell boxes. CPC picks ``cpc_prob`` of the cells of each window, hides their boxes (0, 0, 0, 0 and ``pos_bbox`` 0)
and asks, for every token of those cells, which of ``num_cpc_areas`` equal page areas (a square grid) the cell's
centre falls in (the paper gives no code; this follows its description). Instances are masked once, with a seeded
generator, ``dupe_factor`` times each, so a resumed run sees the same data.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.training import Trainer, TrainingConfig, seed_everything
from alicemind.core.training.evaluation import mean_output_metrics
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.structurallm.config import StructuralLMConfig
from alicemind.structurallm.documents import GRID, Document, DocumentError, document_files, read_documents
from alicemind.structurallm.encoder import DocumentEncoder
from alicemind.structurallm.model import StructuralLMForPreTraining
from alicemind.structurallm.tokenization import StructuralLMTokenizer


@dataclass
class PretrainingDataConfig:
    max_seq_length: int = 512
    stride: int = 128
    masked_lm_prob: float = 0.15
    cpc_prob: float = 0.15
    dupe_factor: int = 1


def cell_area(box: Sequence[int], num_areas: int) -> int:
    """The area (row-major in a square grid of ``num_areas``) holding the centre of ``box`` (0..1000 grid)."""
    side = math.isqrt(num_areas)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col, row = min(int(cx * side / (GRID + 1)), side - 1), min(int(cy * side / (GRID + 1)), side - 1)
    return row * side + col


def mask_window(window: dict[str, Any], tokenizer, data: PretrainingDataConfig, num_areas: int,
                rng: random.Random) -> dict[str, Any]:  # fmt: skip
    """One encoded window -> an instance with ``mlm_labels`` and ``cpc_labels`` (-100 where nothing is asked)."""
    ids, bbox, pos_bbox = list(window["input_ids"]), [list(b) for b in window["bbox"]], list(window["pos_bbox"])
    words = [i for i, c in enumerate(window["cells"]) if c >= 0]
    mlm = [-100] * len(ids)
    special = set(tokenizer.all_special_ids)
    for i in rng.sample(words, max(1, round(len(words) * data.masked_lm_prob))):
        mlm[i] = ids[i]
        draw = rng.random()
        if draw < 0.8:
            ids[i] = tokenizer.mask_token_id
        elif draw < 0.9:
            ids[i] = rng.randrange(tokenizer.vocab_size)
            while ids[i] in special:  # a random real token; specials are a handful, so this ends at once
                ids[i] = rng.randrange(tokenizer.vocab_size)
    cells = sorted({window["cells"][i] for i in words})
    chosen = set(rng.sample(cells, max(1, round(len(cells) * data.cpc_prob))))
    cpc = [-100] * len(ids)
    for i in words:
        if window["cells"][i] in chosen:
            cpc[i] = cell_area(bbox[i], num_areas)
            bbox[i], pos_bbox[i] = [0, 0, 0, 0], 0  # the box is what CPC predicts: hide it
    return {"input_ids": ids, "bbox": bbox, "pos_bbox": pos_bbox, "attention_mask": window["attention_mask"],
            "mlm_labels": mlm, "cpc_labels": cpc}  # fmt: skip


def build_instances(docs: Sequence[Document], tokenizer, data: PretrainingDataConfig, num_areas: int,
                    seed: int, max_pos_bbox: int = 200) -> list[dict[str, Any]]:  # fmt: skip
    """Every window of every document, masked ``dupe_factor`` times with a generator seeded by ``seed``;
    ``pos_bbox`` ids are clipped to ``max_pos_bbox`` (the last row of the model's table)."""
    encoder = DocumentEncoder(tokenizer, max_length=data.max_seq_length, stride=data.stride, max_pos_bbox=max_pos_bbox)
    windows = [w for doc in docs for w in encoder.encode(doc)]
    rng = random.Random(seed)
    return [mask_window(w, tokenizer, data, num_areas, rng) for _ in range(data.dupe_factor) for w in windows]


def pretraining_collator(pad_id: int):
    """Instances -> a padded batch (labels -100 on padding)."""

    def collate(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(it["input_ids"]) for it in items)
        fills = {"input_ids": pad_id, "bbox": [0, 0, 0, 0], "pos_bbox": 0, "attention_mask": 0,
                 "mlm_labels": -100, "cpc_labels": -100}  # fmt: skip
        return {key: torch.tensor([list(it[key]) + [fill] * (length - len(it[key])) for it in items])
                for key, fill in fills.items()}  # fmt: skip

    return collate


def eval_losses(model, loader) -> dict[str, float]:
    """Mean MVLM and CPC losses and accuracies over ``loader``."""
    return mean_output_metrics(model, loader)


@dataclass
class PretrainResult:
    output_dir: Path
    model_dir: Path
    num_instances: int
    initial: dict[str, float]
    final: dict[str, float]


def _documents(path: Any, what: str) -> list[Document]:
    if not path or not Path(path).exists():
        raise CliError(f"{what} {path!r} not found (a JSONL of {{words, boxes, cells}} documents)")
    try:
        return read_documents(path, clamp=True)
    except DocumentError as err:
        raise CliError(str(err)) from None


def run_pretraining(
    recipe: dict[str, Any], *, progress_bar: bool = True, overrides: Sequence[str] = ()
) -> PretrainResult:
    """Mask the documents, pre-train, write ``output_dir/model`` (weights + tokenizer) and ``pretrain_results.json``."""
    source = recipe.get("tokenizer") or recipe.get("model")
    if not source:
        raise CliError("give tokenizer=FOLDER (vocab.json + merges.txt) or model=FOLDER holding them")
    try:
        tokenizer = StructuralLMTokenizer.from_pretrained(source)
    except FileNotFoundError as err:
        raise CliError(str(err)) from None
    data = PretrainingDataConfig(**dict(recipe.get("data") or {}))
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    seed_everything(train_cfg.seed)
    output_dir = Path(recipe.get("output_dir") or "runs/pretrain")
    train_cfg.output_dir = str(output_dir)
    overrides_cfg = dict(recipe.get("model_config") or {})
    if recipe.get("model"):
        model = StructuralLMForPreTraining.from_pretrained(recipe["model"], **overrides_cfg)
    else:
        config = StructuralLMConfig.from_pretrained(recipe.get("scratch_config") or "structurallm.test",
                                                    **{"vocab_size": tokenizer.vocab_size, **overrides_cfg})  # fmt: skip
        model = StructuralLMForPreTraining(config)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CliError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    data.max_seq_length = min(data.max_seq_length, model.config.max_tokens)
    areas = model.config.num_cpc_areas
    max_pos = model.config.bbox_vocab_size - 1
    train_docs = _documents(recipe.get("documents"), "documents")
    train = build_instances(train_docs, tokenizer, data, areas, train_cfg.seed, max_pos)
    eval_docs = _documents(recipe.get("eval_documents") or recipe.get("documents"), "eval_documents")
    held_out = build_instances(eval_docs, tokenizer, PretrainingDataConfig(**{**vars(data), "dupe_factor": 1}),
                               areas, train_cfg.seed + 1, max_pos)  # fmt: skip
    collate = pretraining_collator(tokenizer.pad_token_id)
    batch_size = train_cfg.per_device_batch_size or 8
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(train_cfg.seed))  # fmt: skip
    eval_loader = DataLoader(held_out, batch_size=batch_size, collate_fn=collate)
    initial = eval_losses(model, eval_loader)
    identity = recipe_identity(recipe, files=document_files(recipe["documents"]), vocab=tokenizer.get_vocab(),
                               exclude=("training", "output_dir"), distributions=("alicemind-structurallm",))  # fmt: skip
    identity.overrides = list(overrides)
    trainer = Trainer(model, train_cfg, loader, eval_fn=lambda m: eval_losses(m, eval_loader), run_identity=identity)
    trainer.train()
    final = eval_losses(trainer.model, eval_loader)
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (output_dir / "pretrain_results.json").write_text(json.dumps({"initial": initial, "final": final}, indent=1))
    return PretrainResult(output_dir, model_dir, len(train), initial, final)
