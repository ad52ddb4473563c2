"""Readers and feature builders of the XTREME / WMT14 task files (one file per split and language)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alicemind.core.data import read_columns
from alicemind.core.data.own_spans import read_conll, read_squad


def language_file(data_dir: str | Path | None, pattern: str, lang: str | None = None) -> Path:
    """``data_dir / pattern`` with ``{lang}`` filled in; a clear error when the file is missing."""
    name = pattern.format(lang=lang) if lang is not None else pattern
    path = Path(data_dir) / name if data_dir else Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path}" + (f" (language {lang})" if lang else ""))
    return path


def read_sentence_pairs(path: Path, columns: dict[str, Any]) -> list[dict[str, str]]:
    """Rows ``{"text_a", "text_b"?, "label"?}`` of a TSV/CSV/JSONL file (XNLI, PAWS-X)."""
    wanted = dict(columns)  # a column index / header name, or None: found by name, else by position
    names = {"text_a": ("premise", "sentence1", "text_a", "text"), "text_b": ("hypothesis", "sentence2", "text_b"),
             "label": ("label", "gold_label")}  # fmt: skip
    rows = read_columns(path, wanted, {k: names[k] for k in wanted}, header="auto", format="auto",
                        positions={"text_a": 0, "text_b": 1, "label": 2})  # fmt: skip
    return [dict(r) for _, r in rows]


def classification_features(tokenizer, rows, labels: Sequence[str], max_length: int) -> list[dict]:
    """``input_ids`` of ``<s> a </s></s> b </s>`` and the label's index (no token types: XNLI feeds none)."""
    index = {name: i for i, name in enumerate(labels)}
    a = [r["text_a"] for r in rows]
    b = [r["text_b"] for r in rows] if rows and "text_b" in rows[0] else None
    enc = tokenizer(a, b, truncation=True, max_length=max_length)["input_ids"]
    out = []
    for ids, row in zip(enc, rows):
        feature: dict[str, Any] = {"input_ids": list(ids)}
        if "label" in row:
            if row["label"] not in index:
                raise ValueError(f"label {row['label']!r} is not one of {list(labels)}")
            feature["labels"] = index[row["label"]]
        out.append(feature)
    return out


def tagging_features(
    tokenizer, sentences, labels: Sequence[str], max_length: int
) -> tuple[list[dict], list[list[int]]]:
    """Features labelled on each word's first piece (-100 elsewhere), and each sentence's first-piece positions."""
    index = {name: i for i, name in enumerate(labels)}
    features, firsts = [], []
    for sentence in sentences:
        ids, tags, first = [tokenizer.bos_token_id], [-100], []
        for w, word in enumerate(sentence.tokens):
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
            if len(ids) + len(pieces) >= max_length:
                break
            first.append(len(ids))
            tag = index[sentence.tags[w]] if sentence.tags is not None else -100
            ids += pieces
            tags += [tag] + [-100] * (len(pieces) - 1)
        ids.append(tokenizer.eos_token_id)
        tags.append(-100)
        features.append({"input_ids": ids, "labels": tags})
        firsts.append(first)
    return features, firsts


def qa_features(tokenizer, examples, *, max_length: int, doc_stride: int, max_query_length: int = 64) -> list[dict]:
    """Sliding windows over each context (``doc_stride`` tokens between window starts' overlap, as XTREME's
    ``squad_convert_examples_to_features``): ``<s> question </s></s> context-window </s>``, with the answer's
    token span (0 = ``<s>`` when the answer is outside the window) and each context token's character span."""
    features = []
    for ex_index, ex in enumerate(examples):
        q = tokenizer(ex.question, add_special_tokens=False)["input_ids"][:max_query_length]
        ctx = tokenizer(ex.context, add_special_tokens=False, return_offsets_mapping=True)
        ctx_ids, offsets = ctx["input_ids"], ctx["offset_mapping"]
        room = max_length - len(q) - 4
        if room <= 0:
            raise ValueError(f"max_length {max_length} leaves no room for the context after the question")
        start = 0
        while True:
            window = range(start, min(start + room, len(ctx_ids)))
            prefix = [tokenizer.bos_token_id, *q, tokenizer.eos_token_id, tokenizer.eos_token_id]
            ids = prefix + [ctx_ids[i] for i in window] + [tokenizer.eos_token_id]
            spans = [None] * len(prefix) + [tuple(offsets[i]) for i in window] + [None]
            feature = {"input_ids": ids, "example": ex_index, "spans": spans}
            if ex.answers:
                feature["start_positions"], feature["end_positions"] = answer_tokens(spans, *ex.answers[0])
            features.append(feature)
            if window.stop >= len(ctx_ids):
                break
            start += doc_stride
    return features


def answer_tokens(spans: Sequence[tuple[int, int] | None], text: str, char_start: int) -> tuple[int, int]:
    """First and last token of the answer's characters, or ``(0, 0)`` (``<s>``) when the window does not hold all
    of it (the SQuAD v1 training rule)."""
    char_end = char_start + len(text)
    inside = [t for t, span in enumerate(spans) if span is not None and span[0] < char_end and span[1] > char_start]
    context = [span for span in spans if span is not None]
    if not inside or context[0][0] > char_start or context[-1][1] < char_end:
        return 0, 0
    return inside[0], inside[-1]


def read_task_rows(kind: str, path: Path, columns: dict[str, Any] | None = None):
    """The rows of one task file, by kind: sentence pairs, CoNLL sentences, SQuAD examples or text pairs."""
    if kind == "classification":
        return read_sentence_pairs(path, columns or {"text_a": None, "text_b": None, "label": None})
    if kind == "tagging":
        return read_conll(path)
    if kind == "qa":
        return read_squad(path)
    if kind in ("translation", "retrieval"):
        rows = read_columns(path, {"source": 0, "target": 1}, {"source": (), "target": ()}, header=False,
                            format="tsv", positions={"source": 0, "target": 1})  # fmt: skip
        return [(r["source"], r["target"]) for _, r in rows]
    raise ValueError(f"unknown task kind {kind!r}")
