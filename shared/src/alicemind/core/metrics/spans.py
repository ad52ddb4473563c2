"""Entity-level F1 over BIO/IOBES tag sequences (seqeval's default mode), SQuAD exact match / F1, and the best
answer span of start/end logits."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def _split_tag(tag: str) -> tuple[str, str]:
    if tag in ("O", ""):
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if not kind:  # a bare "B" / "I": an entity without a type
        return prefix, "_"
    return prefix, kind


def _ends(prev: str, prev_kind: str, tag: str, kind: str) -> bool:
    """Whether the chunk that ``prev`` belongs to ends before ``tag`` (conlleval rules)."""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev != "O" and prev_kind != kind


def _starts(prev: str, prev_kind: str, tag: str, kind: str) -> bool:
    """Whether ``tag`` opens a new chunk (conlleval rules: a stray I- or E- also opens one)."""
    if tag in ("B", "S"):
        return True
    if tag in ("I", "E") and prev in ("E", "S", "O"):
        return True
    return tag != "O" and prev_kind != kind


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks ``(type, first, last)`` (inclusive) of one tag sequence, e.g. ``B-PER I-PER O`` -> ``[(PER, 0, 1)]``."""
    entities = []
    prev, prev_kind, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        cur, kind = _split_tag(tag)
        if _ends(prev, prev_kind, cur, kind):
            entities.append((prev_kind, begin, i - 1))
        if _starts(prev, prev_kind, cur, kind):
            begin = i
        prev, prev_kind = cur, kind
    return entities


def span_f1(references: Iterable[Sequence[str]], predictions: Iterable[Sequence[str]]) -> dict[str, float]:
    """Micro precision / recall / F1 over exactly matching entities (type and both boundaries)."""
    true, pred = set(), set()
    count = 0
    for n, (ref, hyp) in enumerate(zip(references, predictions, strict=True)):
        if len(ref) != len(hyp):
            raise ValueError(f"sequence {n}: {len(ref)} reference tags but {len(hyp)} predicted tags")
        true.update((n, *e) for e in get_entities(ref))
        pred.update((n, *e) for e in get_entities(hyp))
        count += 1
    correct = len(true & pred)
    precision = correct / len(pred) if pred else 0.0
    recall = correct / len(true) if true else 0.0
    f = 0.0 if correct == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and English articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised reference."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:  # an empty answer only matches an empty answer (SQuAD 2.0 rule)
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, references: Sequence[str]) -> float:
    """Bag-of-tokens F1 against the best-matching reference."""
    return max(_token_f1(prediction, r) for r in references)


def squad_metrics(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Mean exact match and F1 over questions (fractions); every reference id needs a prediction."""
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. {missing[:3]}")
    if not references:
        raise ValueError("no references given")
    em = sum(exact_match(predictions[q], refs) for q, refs in references.items())
    f = sum(squad_f1(predictions[q], refs) for q, refs in references.items())
    return {"exact_match": em / len(references), "f1": f / len(references)}


def best_span(start_logits, end_logits, allowed, max_answer_length: int = 30) -> tuple[int, int, float] | None:
    """The answer span ``(i, j, start[i] + end[j])`` with the highest score among allowed positions, ``i <= j <
    i + max_answer_length`` (BERT's run_squad rule; the first best on ties), or None when no position is allowed.

    Arrays (or CPU tensors) of one window; the logits keep their dtype, so the pick is the one their own sums give.
    """
    allowed = np.asarray(allowed, dtype=bool)
    if not allowed.any():
        return None
    start = np.where(allowed, np.asarray(start_logits), -np.inf)
    end = np.where(allowed, np.asarray(end_logits), -np.inf)
    n = len(start)
    band = np.triu(np.ones((n, n), bool)) & ~np.triu(np.ones((n, n), bool), max_answer_length)
    scores = np.where(band, start[:, None] + end[None, :], -np.inf)
    i, j = np.unravel_index(int(scores.argmax()), scores.shape)
    return int(i), int(j), float(scores[i, j])
