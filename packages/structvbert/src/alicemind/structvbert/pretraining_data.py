"""Pre-training batches: the harder masking of the talk (whole words; overlapping regions together) and the
labels of every task a stage mixes (mlm, mrfr = masked region feature regression, mrc = masked region
classification of detector object/attribute labels, itm = image-text matching, qa)."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import torch

from alicemind.structvbert.data import RegionCollator

PRETRAIN_TASKS = ("mlm", "mrfr", "mrc", "itm", "qa")


def word_spans(tokens: Sequence[str]) -> list[list[int]]:
    """Positions of each whole word: a WordPiece ``##`` piece joins the word before it."""
    spans: list[list[int]] = []
    for i, token in enumerate(tokens):
        if token.startswith("##") and spans:
            spans[-1].append(i)
        else:
            spans.append([i])
    return spans


def mask_words(ids: list[int], tokens: Sequence[str], rng: random.Random, *, rate: float, mask_id: int,
               vocab_size: int, special_ids: set[int], whole_word: bool = True) -> tuple[list[int], list[int]]:  # fmt: skip
    """BERT masking (80% [MASK], 10% random, 10% kept) of whole words at ``rate``; at least one word is chosen.
    Returns the new ids and the labels (-100 where nothing is predicted)."""
    units = word_spans(tokens) if whole_word else [[i] for i in range(len(tokens))]
    units = [u for u in units if all(ids[i] not in special_ids for i in u)]
    labels = [-100] * len(ids)
    if not units:
        return list(ids), labels
    chosen = [u for u in units if rng.random() < rate] or [rng.choice(units)]
    out = list(ids)
    for unit in chosen:
        roll = rng.random()
        for i in unit:
            labels[i] = ids[i]
            out[i] = mask_id if roll < 0.8 else (rng.randrange(vocab_size) if roll < 0.9 else ids[i])
    return out, labels


def box_iou(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[n, 4]`` x1, y1, x2, y2 boxes."""
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def choose_regions(boxes: np.ndarray, rng: random.Random, *, rate: float, iou_threshold: float | None) -> np.ndarray:
    """Regions to mask at ``rate`` (at least one); with ``iou_threshold``, every region overlapping a chosen one
    by more than it is masked too, so the model cannot copy a near-duplicate detection."""
    n = len(boxes)
    chosen = np.array([rng.random() < rate for _ in range(n)])
    if not chosen.any():
        chosen[rng.randrange(n)] = True
    if iou_threshold is not None:
        chosen = chosen | (box_iou(boxes[:, :4])[chosen] > iou_threshold).any(0)
    return chosen


class PretrainCollator:
    """Examples ``{"img_id", "sent"(, "label")}`` -> one batch with the labels of ``tasks``.

    ``itm`` pairs an example's image with another image's sentence at ``mismatch_prob`` (label 0), never with a
    sentence the image itself is paired with: not in the batch, nor in ``image_sentences`` (img_id -> its
    sentences over the whole corpus), so a shared question or a duplicate caption is not a "mismatch" no model
    could tell; ``qa`` gives soft answer scores for matched examples with a question and rows of -1 elsewhere;
    ``text_only`` drops the regions (the talk's text-only first stage)."""

    def __init__(self, tokenizer, regions: RegionCollator | None, tasks: Sequence[str], *, answers: Sequence[str] = (),
                 word_mask_rate: float = 0.15, whole_word_mask: bool = True, obj_mask_rate: float = 0.15,
                 overlap_iou: float | None = 0.5, mismatch_prob: float = 0.5, seed: int = 0,
                 image_sentences: Mapping[str, Collection[str]] | None = None):  # fmt: skip
        unknown = set(tasks) - set(PRETRAIN_TASKS)
        if unknown:
            raise ValueError(f"unknown pre-training task(s) {sorted(unknown)}; known: {PRETRAIN_TASKS}")
        self.tokenizer, self.regions, self.tasks = tokenizer, regions, set(tasks)
        self.answer_index = {a: i for i, a in enumerate(answers)}
        self.word_mask_rate, self.whole_word_mask = word_mask_rate, whole_word_mask
        self.obj_mask_rate, self.overlap_iou, self.mismatch_prob = obj_mask_rate, overlap_iou, mismatch_prob
        self.image_sentences = {k: set(v) for k, v in (image_sentences or {}).items()}
        self.rng = random.Random(seed)
        self.mask_id = tokenizer.convert_tokens_to_ids("[MASK]")
        self.special = set(tokenizer.all_special_ids)
        self.max_length = regions.max_length if regions is not None else 32

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        rng = self.rng
        examples = list(examples)
        matched = [1] * len(examples)
        sentences = [e["sent"] for e in examples]
        if "itm" in self.tasks and self.regions is not None:
            own: dict[str, set[str]] = {}
            for e in examples:
                own.setdefault(e["img_id"], set(self.image_sentences.get(e["img_id"], ()))).add(e["sent"])
            for i, example in enumerate(examples):
                # A negative takes a sentence of another image that this image is not paired with anywhere (the
                # same question text on two images, or two images' identical captions, would be a "mismatch" no
                # model could tell).
                mine = own[example["img_id"]]
                others = [e["sent"] for e in examples if e["img_id"] != example["img_id"] and e["sent"] not in mine]
                if others and rng.random() < self.mismatch_prob:
                    sentences[i], matched[i] = rng.choice(others), 0
        ids = self.tokenizer(sentences, truncation=True, max_length=self.max_length)["input_ids"]
        rows, mlm = [], []
        for row in ids:
            if "mlm" in self.tasks:
                row, labels = mask_words(row, self.tokenizer.convert_ids_to_tokens(row), rng, rate=self.word_mask_rate,
                                         mask_id=self.mask_id, vocab_size=self.tokenizer.vocab_size,
                                         special_ids=self.special, whole_word=self.whole_word_mask)  # fmt: skip
                mlm.append(labels)
            rows.append(row)
        batch = self._text(rows)
        if mlm:
            width = batch["input_ids"].shape[1]
            batch["mlm_labels"] = torch.tensor([m[:width] + [-100] * (width - len(m)) for m in mlm], dtype=torch.long)
        if self.regions is None:
            return batch
        regions = self.regions.regions([e["img_id"] for e in examples])
        batch.update(visual_feats=regions["visual_feats"], visual_boxes=regions["visual_boxes"])
        if self.regions.mask_padded_regions:
            batch["visual_mask"] = regions["region_valid"]
        if self.tasks & {"mrfr", "mrc"}:
            self._mask_regions(batch, regions)
        if "itm" in self.tasks:
            batch["matched_labels"] = torch.tensor(matched, dtype=torch.long)
        if "qa" in self.tasks and self.answer_index:
            answers = torch.full((len(examples), len(self.answer_index)), -1.0)
            for i, e in enumerate(examples):
                if matched[i] and e.get("label"):
                    answers[i] = 0.0
                    for a, s in e["label"].items():
                        if a in self.answer_index:
                            answers[i, self.answer_index[a]] = float(s)
            batch["answer_labels"] = answers
        return batch

    def _text(self, rows):
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}

    def _mask_regions(self, batch: dict, regions: Mapping[str, torch.Tensor]) -> None:
        valid = regions["region_valid"].bool()
        mask = torch.zeros_like(valid)
        for i in range(len(valid)):
            n = int(valid[i].sum())
            boxes = batch["visual_boxes"][i, :n].numpy()
            mask[i, :n] = torch.from_numpy(choose_regions(boxes, self.rng, rate=self.obj_mask_rate,
                                                          iou_threshold=self.overlap_iou))  # fmt: skip
        batch["region_mask"] = mask
        if "mrfr" in self.tasks:
            batch["region_targets"] = batch["visual_feats"].clone()
        if "mrc" in self.tasks:
            batch["obj_labels"] = regions["object_labels"]
            batch["attr_labels"] = regions["attr_labels"]
        batch["visual_feats"] = batch["visual_feats"].masked_fill(mask[..., None], 0.0)
