"""ANLS, the DocVQA metric (Biten et al., 2019): average normalised Levenshtein similarity with a 0.5 threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _normalise(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls_score(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """max over the ground truths of ``1 - NL`` (NL = distance / longer length, case and spacing ignored), or 0
    where NL reaches ``threshold``."""
    if not answers:
        raise ValueError("ANLS needs at least one ground-truth answer")
    pred, best = _normalise(prediction), 0.0
    for answer in answers:
        gold = _normalise(answer)
        longest = max(len(pred), len(gold))
        nl = levenshtein(pred, gold) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best


def anls(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Mean ANLS over the questions of ``references`` (a question without a prediction scores 0)."""
    if not references:
        raise ValueError("no questions to score")
    scores = [anls_score(predictions.get(q, ""), answers) for q, answers in references.items()]
    return {"anls": sum(scores) / len(scores)}
