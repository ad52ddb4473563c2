"""Schema-dependency pre-training: labels derived from (question, SQL, table), MLM masking, the training run.

Dependency links (the CBANK ``struct_question`` / ``struct_label`` fields): every question token depends on one
schema item, a column or the dummy column (no link, label ``null``), with a label of
:data:`~alicemind.sdcup.config.DEPENDENCY_LABELS`. :func:`derive_dependencies` builds them from the SQL: value
mentions of a condition -> ``val`` (``sort_value`` for ORDER conditions), its column's mention -> ``wcol``
(``sort_col``), the comparison cue word nearest its value -> ``op`` (superlatives -> ``sort_op``; ``==`` has none); select columns' mentions -> ``scol``,
aggregation cue words -> ``agg``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alicemind.sdcup.config import DEPENDENCY_LABELS
from alicemind.sdcup.curriculum import difficulty
from alicemind.sdcup.sql import ORDER_OPS
from alicemind.sdcup.table import AGGREGATE_CUES, COMPARE_CUES, SUPERLATIVE_CUES, TableQuestion, find_token_spans
from alicemind.sdcup.tokenization import SdcupTokenizer, SerializedInput, collate_serialized

LABEL_ID = {name: i for i, name in enumerate(DEPENDENCY_LABELS)}


def derive_dependencies(example: TableQuestion, tokens: Sequence[str]) -> tuple[list[int], list[int]]:
    """``(heads, labels)`` per question token: the column index (the dummy column = len(header)) and label id."""
    table, sql = example.table, example.sql
    heads, labels = [len(table.header)] * len(tokens), [0] * len(tokens)

    def mark(spans, column: int, label: str) -> None:
        for start, end in spans:
            for k in range(start, end):
                if labels[k] == 0:
                    heads[k], labels[k] = column, LABEL_ID[label]

    def spans_of(phrases: Sequence[str]) -> list[tuple[int, int]]:
        return [span for phrase in phrases for span in find_token_spans(tokens, str(phrase))]

    def nearest(cues: Sequence[str], anchor: list[tuple[int, int]]) -> list[tuple[int, int]]:
        # The cue word of one condition is the one closest to its value (several conditions share the cue list).
        found = spans_of(cues)
        if not found or not anchor:
            return found[:1]
        return [min(found, key=lambda sp: min(abs(sp[0] - a[0]) for a in anchor))]

    for c, o, value in sql.conds:
        order = o in ORDER_OPS
        values = spans_of([value])
        mark(values, c, "sort_value" if order else "val")
        mark(spans_of([table.header[c]]), c, "sort_col" if order else "wcol")
        if order or o != 2:  # equality has no cue word
            mark(nearest(SUPERLATIVE_CUES if order else COMPARE_CUES, values), c, "sort_op" if order else "op")
    for s, a in zip(sql.sel, sql.agg, strict=True):
        mark(spans_of([table.header[s]]), s, "scol")
        if a:
            mark(spans_of(AGGREGATE_CUES), s, "agg")
    return heads, labels


@dataclass
class PretrainingItem:
    encoded: SerializedInput
    heads: list[int]
    labels: list[int]
    masked_ids: list[int]
    mlm_labels: list[int]
    difficulty: float


def mask_tokens(encoded: SerializedInput, tokenizer: SdcupTokenizer, probability: float, rng: random.Random):
    """BERT masking (80% [MASK], 10% random, 10% kept) of non-special tokens: ``(ids, labels)``."""
    ids, labels = list(encoded.input_ids), [-100] * len(encoded.input_ids)
    special = {"[CLS]", "[SEP]"}
    mask_id, vocab_size = tokenizer.convert_tokens_to_ids("[MASK]"), tokenizer.vocab_size
    for k, tok in enumerate(encoded.tokens):
        if tok in special or rng.random() >= probability:
            continue
        labels[k] = ids[k]
        roll = rng.random()
        ids[k] = mask_id if roll < 0.8 else (rng.randrange(vocab_size) if roll < 0.9 else ids[k])
    return ids, labels


def build_items(examples: Sequence[TableQuestion], tokenizer: SdcupTokenizer, *, max_seq_length: int,
                mlm_probability: float, seed: int) -> list[PretrainingItem]:  # fmt: skip
    """Serialise, derive (or read) the dependency targets, mask, and score every pair."""
    rng = random.Random(seed)
    items = []
    for ex in examples:
        if ex.sql is None:
            raise ValueError(f"example {ex.example_id!r} has no SQL: pre-training pairs need one")
        enc = tokenizer.serialize(ex, max_seq_length)
        heads, labels = ex.struct if ex.struct else derive_dependencies(ex, enc.question_tokens)
        ids, mlm = mask_tokens(enc, tokenizer, mlm_probability, rng)
        linked = len({h for h, lab in zip(heads, labels, strict=True) if lab})
        score = difficulty(ex.sql.sel, ex.sql.agg, ex.sql.conds, linked, len(ex.table.header), len(enc.question_tokens))
        items.append(PretrainingItem(enc, heads, labels, ids, mlm, score))
    return items


def easy_to_hard(items: Sequence[PretrainingItem]) -> list[int]:
    """Indices of ``items`` from the easiest to the hardest (stable for equal scores)."""
    return sorted(range(len(items)), key=lambda i: (items[i].difficulty, i))


def pretraining_collator(items: Sequence[PretrainingItem], *, masked: bool = True):
    """Indices -> model inputs with ``dependency_heads``/``dependency_labels`` (-100 = padding), ``mlm_labels``."""

    def collate(indices: Sequence[int]) -> dict[str, Any]:
        chosen = [items[i] for i in indices]
        batch = collate_serialized([it.encoded for it in chosen])
        width = batch["question_index"].shape[1]
        heads = torch.full((len(chosen), width), -100, dtype=torch.long)
        labels = torch.zeros((len(chosen), width), dtype=torch.long)
        mlm = torch.full(batch["input_ids"].shape, -100, dtype=torch.long)
        for row, it in enumerate(chosen):
            heads[row, : len(it.heads)] = torch.tensor(it.heads)
            labels[row, : len(it.labels)] = torch.tensor(it.labels)
            if masked:
                batch["input_ids"][row, : len(it.masked_ids)] = torch.tensor(it.masked_ids)
                mlm[row, : len(it.mlm_labels)] = torch.tensor(it.mlm_labels)
        batch.update(dependency_heads=heads, dependency_labels=labels, mlm_labels=mlm if masked else None)
        if not masked:
            del batch["mlm_labels"]
        return batch

    return collate


def write_corpus(examples: Sequence[TableQuestion], tokenizer: SdcupTokenizer, path: str | Path) -> int:
    """The corpus builder: CBANK-style JSON lines with ``question_tok``, ``struct_question`` (head column per
    token) and ``struct_label`` (label id per token) derived from each (question, SQL, table) triple."""
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for ex in examples:
            tokens = list(ex.question_tokens) if ex.question_tokens else tokenizer.question_tokens(ex.question)
            heads, labels = derive_dependencies(ex, tokens)
            record = {"sql_id": ex.example_id, "table_id": ex.table.table_id, "question": ex.question,
                      "question_tok": tokens, "sql": ex.sql.to_dict(), "struct_question": heads,
                      "struct_label": labels}  # fmt: skip
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
