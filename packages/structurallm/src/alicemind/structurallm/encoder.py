"""``DocumentEncoder``: a :class:`~alicemind.structurallm.documents.Document` -> model inputs, one window per
``max_length`` tokens with ``stride`` tokens of overlap, so no token of a long page is dropped.

Each window is ``<s> [question </s></s>] words </s>``; every sub-token carries its cell's box, ``<s>`` and padding
[0, 0, 0, 0], ``</s>`` [1000, 1000, 1000, 1000] (as the original), question tokens [0, 0, 0, 0]. ``pos_bbox`` is
the cell's index in the page + 1 (clipped to the table), 0 for special tokens. A word's label sits on its first
sub-token (-100 elsewhere); every word is *owned* by the window where its first sub-token has the most context,
and predictions are read from the owner only (:func:`assemble_word_predictions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from alicemind.structurallm.documents import GRID, Document

CLS_BOX, SEP_BOX = (0, 0, 0, 0), (GRID, GRID, GRID, GRID)


class DocumentEncoder:
    """Documents -> windows of ``input_ids``, ``bbox``, ``pos_bbox``, ``attention_mask`` (and labels)."""

    def __init__(self, tokenizer, *, max_length: int = 512, stride: int = 128, max_pos_bbox: int = 200,
                 label2id: Mapping[str, int] | None = None, max_question_tokens: int = 64):  # fmt: skip
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {max_length}")
        self.tokenizer, self.max_length, self.stride = tokenizer, max_length, stride
        self.max_pos_bbox, self.label2id, self.max_question_tokens = max_pos_bbox, label2id, max_question_tokens

    def _content_width(self, question_len: int) -> int:
        specials = 2 if question_len == 0 else 4
        width = self.max_length - specials - question_len
        if width <= self.stride:
            raise ValueError(f"max_length {self.max_length} leaves {width} document tokens per window, not more "
                             f"than stride {self.stride}: lower the stride or raise max_length")  # fmt: skip
        return width

    def encode(self, doc: Document, question: str | None = None) -> list[dict[str, Any]]:
        """Every window of ``doc`` (with ``question`` before the words, for QA) as a dict of lists."""
        tok = self.tokenizer
        pieces = tok.word_pieces(doc.words)
        token_word = [w for w, ids in enumerate(pieces) for _ in ids]
        token_ids = [i for ids in pieces for i in ids]
        first = [k == 0 for ids in pieces for k in range(len(ids))]
        q_words = question.split() if question else []
        q_ids = [i for ids in tok.word_pieces(q_words) for i in ids][: self.max_question_tokens] if q_words else []
        width = self._content_width(len(q_ids))
        n = len(token_ids)
        starts = list(range(0, max(n - width, 0) + 1, width - self.stride))
        if starts[-1] + width < n:
            starts.append(n - width)
        owner = self._owners(token_word, first, starts, width)
        prefix_ids = [tok.cls_token_id] + (q_ids + [tok.sep_token_id, tok.sep_token_id] if q_ids else [])
        prefix_box = [CLS_BOX] * len(prefix_ids)
        windows = []
        for number, start in enumerate(starts):
            span = range(start, min(start + width, n))
            ids = prefix_ids + [token_ids[t] for t in span] + [tok.sep_token_id]
            boxes = prefix_box + [tuple(doc.boxes[token_word[t]]) for t in span] + [SEP_BOX]
            pos = [0] * len(prefix_ids) + [min(doc.cells[token_word[t]] + 1, self.max_pos_bbox) for t in span] + [0]
            word_index = [-1] * len(prefix_ids) + [token_word[t] if first[t] else -1 for t in span] + [-1]
            token_of = [-1] * len(prefix_ids) + [token_word[t] for t in span] + [-1]
            cells = [-1] * len(prefix_ids) + [doc.cells[token_word[t]] for t in span] + [-1]
            owned = [False] * len(prefix_ids) + [first[t] and owner[token_word[t]] == number for t in span] + [False]
            window = {"input_ids": ids, "bbox": [list(b) for b in boxes], "pos_bbox": pos,
                      "attention_mask": [1] * len(ids), "word_index": word_index, "owned": owned, "cells": cells,
                      "token_word": token_of,
                      "offset": len(prefix_ids) - start, "doc_id": doc.id}  # fmt: skip
            if doc.labels is not None and self.label2id is not None:
                window["labels"] = [self._label(doc, w) if w >= 0 else -100 for w in word_index]
            windows.append(window)
        return windows

    def _label(self, doc: Document, word: int) -> int:
        label = doc.labels[word]
        if label not in self.label2id:
            raise ValueError(f"document {doc.id!r}: label {label!r} of word {word} is not one of the model's labels")
        return self.label2id[label]

    @staticmethod
    def _owners(token_word: list[int], first: list[bool], starts: list[int], width: int) -> dict[int, int]:
        owner: dict[int, int] = {}
        for t, (word, is_first) in enumerate(zip(token_word, first)):
            if not is_first:
                continue
            inside = [(min(t - s, s + width - 1 - t), k) for k, s in enumerate(starts) if s <= t < s + width]
            owner[word] = max(inside)[1]  # most context on both sides; ties go to the later window
        return owner

    def pad(self, windows: Sequence[Mapping[str, Any]], *, length: int | None = None) -> dict[str, torch.Tensor]:
        """Windows -> a batch padded to the longest, or to ``length`` if longer (pad id, box 0, mask 0, labels
        -100)."""
        length = max([len(w["input_ids"]) for w in windows] + [length or 0])
        pad_id = self.tokenizer.pad_token_id

        def column(key: str, fill: Any) -> torch.Tensor:
            rows = [list(w[key]) + [fill] * (length - len(w[key])) for w in windows]
            return torch.tensor(rows, dtype=torch.bool if key == "owned" else torch.long)

        batch = {"input_ids": column("input_ids", pad_id), "bbox": column("bbox", [0, 0, 0, 0]),
                 "pos_bbox": column("pos_bbox", 0), "attention_mask": column("attention_mask", 0)}  # fmt: skip
        if all("labels" in w for w in windows):
            batch["labels"] = column("labels", -100)
        return batch


def assemble_word_predictions(windows: Sequence[Mapping[str, Any]], logits: Sequence[torch.Tensor],
                              num_words: int) -> list[int]:  # fmt: skip
    """Per-word class ids of one document from its windows' token logits (``[L, C]`` each), each word read from
    the window that owns it. Raises if a word is owned by no window (it never is: windows cover every token)."""
    out: list[int | None] = [None] * num_words
    for window, scores in zip(windows, logits):
        for position, (word, owned) in enumerate(zip(window["word_index"], window["owned"])):
            if owned:
                out[word] = int(scores[position].argmax())
    missing = [w for w, p in enumerate(out) if p is None]
    if missing:
        raise RuntimeError(f"words {missing[:5]} are in no window")
    return out  # type: ignore[return-value]
