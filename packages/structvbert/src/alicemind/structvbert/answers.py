"""Answers: the original's normalisation (for the answer-table remap), the answer vocabulary, VQA scores."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

# lxrt/qa_answer_table.py: AnswerTable.ANS_CONVERT.
_CONVERT = {
    "a man": "man", "the man": "man", "a woman": "woman", "the woman": "woman", "one": "1", "two": "2",
    "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
    "grey": "gray",
}  # fmt: skip


def normalize_answer(answer: str) -> str:
    """Lower-case; drop a trailing "."; drop a leading "a ", "an ", "the "; number words to digits; grey -> gray."""
    if not answer:
        return ""
    answer = answer.lower()
    if answer.endswith("."):
        answer = answer[:-1].strip()
    for article in ("a ", "an ", "the "):
        if answer.startswith(article):
            answer = answer[len(article) :].strip()
    return _CONVERT.get(answer, answer)


def read_answer_list(source: str | Path | Sequence) -> list[str]:
    """An answer list from ``all_ans.json`` (``[{"ans": ..., "dsets": [...]}, ...]``), ``trainval_label2ans.json``
    (a list of strings), or a list already in memory."""
    if isinstance(source, (str, Path)):
        source = json.loads(Path(source).read_text(encoding="utf-8"))
    return [item["ans"] if isinstance(item, Mapping) else str(item) for item in source]


def vqa_score(human_answers: Sequence[str], answer: str) -> float:
    """The official VQA accuracy of ``answer`` against the 10 human answers: min(1, matches / 3), averaged over
    the 10 leave-one-out subsets of 9 annotators."""
    if not human_answers:
        raise ValueError("vqa_score needs the human answers")
    matches = [a == answer for a in human_answers]
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3) for m in matches) / len(matches)


def soft_scores(human_answers: Sequence[str]) -> dict[str, float]:
    """Training targets from the 10 human answers: each distinct answer's :func:`vqa_score`."""
    return {answer: vqa_score(human_answers, answer) for answer in Counter(human_answers)}


def soft_accuracy(predictions: Mapping, labels: Mapping[object, Mapping[str, float]]) -> float:
    """VQA soft accuracy as the original evaluates it: the mean over questions of ``label[predicted answer]``."""
    if not predictions:
        raise ValueError("no predictions to score")
    return sum(labels[q].get(a, 0.0) for q, a in predictions.items()) / len(predictions)


def build_answer_vocab(label_dicts: Sequence[Mapping[str, float]], min_count: int = 1) -> list[str]:
    """Answers seen in at least ``min_count`` training questions' labels, most frequent first (ties by name)."""
    counts = Counter(a for label in label_dicts for a in label)
    return sorted((a for a, n in counts.items() if n >= min_count), key=lambda a: (-counts[a], a))
