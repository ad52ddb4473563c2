"""The original's JSON formats read into records, and the collators that turn records into model batches.

Formats (models-multimodal.md §4.4; ``image`` paths are relative to ``image_root``):
- pre-training / retrieval train: ``[{"image", "caption" (str or list), "image_id"?}]`` (ALBEF);
- retrieval eval: ``[{"image", "caption": [..]}]``;
- caption (Karpathy): ``[{"filename", "filepath", "sentences": [{"raw"}]}]`` or ``[{"image", "caption"}]``;
- VQA: ``[{"image", "question", "answer": [..] or str, "question_id"?}]``;
- grounding: ``[{"image", "text", "bbox": [x1, y1, x2, y2]}]``, or the release's TransVG ``.pth`` splits
  (``grounding_data.py``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from alicemind.core.cli import CliError
from alicemind.mplug.processor import MPlugProcessor, box_to_tokens, load_image, normalised_box


def read_records(path: str | Path, image_root: str | Path | None = None) -> list[dict[str, Any]]:
    """A JSON list of records with ``image`` resolved against ``image_root`` (Karpathy records too)."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"annotation file {path} does not exist")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CliError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise CliError(f"{path} must hold a JSON list of objects")
    root = Path(image_root) if image_root else path.parent
    out = []
    for i, record in enumerate(records):
        record = dict(record)
        if "image" not in record and "filename" in record:  # Karpathy caption record
            record["image"] = str(Path(record.get("filepath", "")) / record["filename"])
            record["caption"] = [s["raw"] for s in record.get("sentences", [])]
        if "image" not in record:
            raise CliError(f"{path}: record {i} has no 'image' (or 'filename')")
        record["image"] = str(root / record["image"])
        out.append(record)
    return out


def pair_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One (image, caption, image index) per caption; every image gets an index for ITC positives."""
    ids: dict[str, int] = {}
    pairs = []
    for r in records:
        key = str(r.get("image_id", r["image"]))
        idx = ids.setdefault(key, len(ids))
        captions = r["caption"] if isinstance(r["caption"], list) else [r["caption"]]
        pairs += [{"image": r["image"], "caption": c, "idx": idx} for c in captions]
    return pairs


class Collator:
    """Records -> the keyword arguments of one task model's ``forward``; images decoded (and augmented) here."""

    def __init__(self, processor: MPlugProcessor, task: str, *, train: bool = True, max_words: int = 30):
        self.processor, self.task, self.train, self.max_words = processor, task, train, max_words

    def _pixels(self, batch):
        return self.processor.images([r["image"] for r in batch], train=self.train)

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        p = self.processor
        if self.task in ("pretrain", "retrieval", "caption"):
            ids, mask = p.text([r["caption"] for r in batch], eos=self.task != "retrieval", max_length=self.max_words)
            out = {"pixel_values": self._pixels(batch), "input_ids": ids, "attention_mask": mask}
            if self.task != "caption":
                out["idx"] = torch.tensor([r["idx"] for r in batch])
            return out
        if self.task == "scst":  # self-critical: images and every reference caption of each (CIDEr-D reward)
            return {"pixel_values": self._pixels(batch), "references": [list(r["references"]) for r in batch]}
        if self.task == "vqa":
            q_ids, q_mask = p.text([r["question"] for r in batch], max_length=self.max_words)
            answers, weights, counts = [], [], []
            for r in batch:
                given = r["answer"] if isinstance(r["answer"], list) else [r["answer"]]
                tally = Counter(given)
                answers += list(tally)
                weights += [n / len(given) for n in tally.values()]  # the VQA soft score per distinct answer
                counts.append(len(tally))
            a_ids, a_mask = p.text(answers, eos=True)
            return {"pixel_values": self._pixels(batch), "question_ids": q_ids, "question_mask": q_mask,
                    "answer_ids": a_ids, "answer_mask": a_mask, "answer_weights": torch.tensor(weights),
                    "answers_per_question": torch.tensor(counts)}  # fmt: skip
        if self.task == "grounding":
            t_ids, t_mask = p.text([r["text"] for r in batch], max_length=self.max_words)
            boxes, targets = [], []
            for r in batch:
                w, h = load_image(r["image"]).size
                boxes.append(p.tokenizer.convert_tokens_to_ids(box_to_tokens(r["bbox"], w, h)))
                targets.append(normalised_box(r["bbox"], w, h))
            pixels = p.images([r["image"] for r in batch])  # no crop/flip: they would move the box
            return {"pixel_values": pixels, "text_ids": t_ids, "text_mask": t_mask,
                    "box_token_ids": torch.tensor(boxes), "box_targets": torch.tensor(targets)}  # fmt: skip
        raise ValueError(f"unknown task {self.task!r}")
