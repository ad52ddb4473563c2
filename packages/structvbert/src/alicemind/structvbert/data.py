"""Task data: VQA / GQA / NLVR2 json files, their encoding with the tokenizer and region features, and batching.

VQA (``vqa_data.py`` of the original): ``[{"img_id", "question_id", "sent", "label": {answer: soft score}}]``; GQA
uses the same fields with one answer of score 1; NLVR2: ``[{"identifier", "img0", "img1", "sent", "label": 0|1}]``.
Questions are ``[CLS] q [SEP]`` cut and zero-padded to ``max_text_length`` (20 in the original).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alicemind.core.cli import CliError
from alicemind.structvbert.regions import RegionFeatures

TASKS = ("vqa", "gqa", "nlvr2")


def read_task_file(path: str | Path, task: str) -> list[dict[str, Any]]:
    """Read a task's json split, checking the fields each example needs (one clear error naming the first bad one)."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"no {task} split file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CliError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, list):
        raise CliError(f"{path}: expected a JSON list of examples, got {type(data).__name__}")
    need = ("identifier", "img0", "img1", "sent") if task == "nlvr2" else ("img_id", "question_id", "sent")
    for i, example in enumerate(data):
        missing = [k for k in need if not isinstance(example, Mapping) or k not in example]
        if missing:
            raise CliError(f"{path}: example {i} lacks {missing}")
    return data


@dataclass
class Encoded:
    """One example ready for the collator."""

    key: Any  # question_id (VQA/GQA) or identifier (NLVR2)
    input_ids: list[int]
    images: tuple[str, ...]
    target: Any = None  # {answer index: score} for VQA/GQA, 0/1 for NLVR2


def encode_examples(tokenizer, examples: Sequence[Mapping], task: str, *, max_length: int,
                    answer_index: Mapping[str, int] | None = None) -> list[Encoded]:  # fmt: skip
    """Tokenise questions as ``[CLS] q [SEP]`` (cut to ``max_length``) and map labels onto the answer vocabulary
    (answers outside it are dropped from the target, as the original's ans2label lookup keeps only known ones)."""
    ids = tokenizer([str(e["sent"]).strip() for e in examples], truncation=True, max_length=max_length)["input_ids"]
    out = []
    for example, row in zip(examples, ids):
        if task == "nlvr2":
            label = example.get("label")
            out.append(Encoded(example["identifier"], row, (example["img0"], example["img1"]),
                               None if label is None else int(label)))  # fmt: skip
            continue
        target = None
        if "label" in example and answer_index is not None:
            target = {answer_index[a]: float(s) for a, s in example["label"].items() if a in answer_index}
        out.append(Encoded(example["question_id"], row, (example["img_id"],), target))
    return out


class RegionCollator:
    """Batches of encoded examples: text zero-padded to ``max_length``; regions zero-padded to ``max_objects``
    (the original's ``--padding``; ``pad_to_batch=True`` pads to the longest in the batch instead); soft-score
    targets for VQA/GQA. ``mask_padded_regions=False`` keeps the original, which attends to padded regions."""

    def __init__(self, features: RegionFeatures, *, max_objects: int, max_length: int, num_answers: int = 0,
                 pad_to_batch: bool = False, mask_padded_regions: bool = False, add_box_size: bool = False,
                 warn_on_cut: bool = True):  # fmt: skip
        self.features, self.max_objects, self.max_length = features, max_objects, max_length
        self.num_answers, self.pad_to_batch, self.mask_padded_regions = num_answers, pad_to_batch, mask_padded_regions
        self.add_box_size, self.warn_on_cut = add_box_size, warn_on_cut

    def regions(self, image_ids: Sequence[str]) -> dict[str, torch.Tensor]:
        samples = [
            self.features.get(i, self.max_objects, add_box_size=self.add_box_size, warn=self.warn_on_cut)
            for i in image_ids
        ]
        width = max(len(s.boxes) for s in samples) if self.pad_to_batch else self.max_objects
        feats = np.zeros((len(samples), width, self.features.feature_dim), np.float32)
        boxes = np.zeros((len(samples), width, samples[0].boxes.shape[1]), np.float32)
        mask = np.zeros((len(samples), width), np.int64)
        objects = np.full((len(samples), width), -100, np.int64)
        attrs = np.full((len(samples), width), -100, np.int64)
        for row, s in enumerate(samples):
            n = len(s.boxes)
            feats[row, :n], boxes[row, :n], mask[row, :n] = s.features, s.boxes, 1
            objects[row, :n] = np.where(s.objects >= 0, s.objects, -100)
            attrs[row, :n] = np.where(s.attrs >= 0, s.attrs, -100)
        return {"visual_feats": torch.from_numpy(feats), "visual_boxes": torch.from_numpy(boxes),
                "region_valid": torch.from_numpy(mask), "object_labels": torch.from_numpy(objects),
                "attr_labels": torch.from_numpy(attrs)}  # fmt: skip

    def text(self, rows: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        ids = torch.zeros(len(rows), self.max_length, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row[: self.max_length], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}

    def __call__(self, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        out = self.text([e.input_ids for e in batch])
        pair = len(batch[0].images) == 2
        regions = self.regions([i for e in batch for i in e.images])
        if pair:
            regions = {k: v.reshape(len(batch), 2, *v.shape[1:]) for k, v in regions.items()}
        out.update(visual_feats=regions["visual_feats"], visual_boxes=regions["visual_boxes"])
        if self.mask_padded_regions:
            out["visual_mask"] = regions["region_valid"]
        if pair and batch[0].target is not None:
            out["labels"] = torch.tensor([e.target for e in batch], dtype=torch.long)
        elif not pair and batch[0].target is not None:
            labels = torch.zeros(len(batch), self.num_answers)
            for row, e in enumerate(batch):
                for index, score in e.target.items():
                    labels[row, index] = score
            out["labels"] = labels
        return out
