"""Classification and regression metrics (all returned as fractions, not percentages)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ArrayLike = Sequence[Any] | np.ndarray


def _pair(preds: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(preds), np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(f"predictions and labels differ in shape: {p.shape} vs {y.shape}")
    if p.size == 0:
        raise ValueError("cannot compute a metric over zero examples")
    return p, y


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of predictions equal to their label."""
    p, y = _pair(preds, labels)
    return float(np.mean(p == y))


def _counts(p: np.ndarray, y: np.ndarray, cls: Any) -> tuple[int, int, int]:
    tp = int(np.sum((p == cls) & (y == cls)))
    return tp, int(np.sum((p == cls) & (y != cls))), int(np.sum((p != cls) & (y == cls)))


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1(preds: ArrayLike, labels: ArrayLike, *, average: str = "binary", pos_label: Any = 1) -> float:
    """F1 score: ``binary`` (for ``pos_label``), ``macro`` (mean over the classes seen in preds or labels) or
    ``micro`` (pooled counts; equals accuracy for single-label data). A class with no true positive scores 0."""
    p, y = _pair(preds, labels)
    if average == "binary":
        return _f1(*_counts(p, y, pos_label))
    classes = np.union1d(np.unique(p), np.unique(y))
    counts = np.array([_counts(p, y, c) for c in classes])
    if average == "macro":
        return float(np.mean([_f1(*c) for c in counts]))
    if average == "micro":
        return _f1(*counts.sum(axis=0))
    raise ValueError(f"unknown average {average!r}; expected 'binary', 'macro' or 'micro'")


def matthews_corrcoef(preds: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (multi-class form of Gorodkin 2004, as scikit-learn); 0 when undefined."""
    p, y = _pair(preds, labels)
    classes, inverse = np.unique(np.concatenate([y, p]), return_inverse=True)
    k = len(classes)
    confusion = np.bincount(inverse[: len(y)] * k + inverse[len(y) :], minlength=k * k).reshape(k, k).astype(float)
    true_per_class, pred_per_class = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, total = np.trace(confusion), confusion.sum()
    numerator = correct * total - true_per_class @ pred_per_class
    denominator = np.sqrt((total**2 - pred_per_class @ pred_per_class) * (total**2 - true_per_class @ true_per_class))
    return 0.0 if denominator == 0 else float(numerator / denominator)


def pearson(preds: ArrayLike, labels: ArrayLike) -> float:
    """Pearson correlation; NaN when either side is constant."""
    p, y = _pair(preds, labels)
    p, y = p.astype(np.float64) - p.mean(), y.astype(np.float64) - y.mean()
    denominator = np.sqrt((p @ p) * (y @ y))
    return float("nan") if denominator == 0 else float((p @ y) / denominator)


def rankdata(values: ArrayLike) -> np.ndarray:
    """1-based ranks, ties getting the average of the ranks they span (scipy's ``method='average'``)."""
    _, inverse, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # rank of the last member of each tie group
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def spearman(preds: ArrayLike, labels: ArrayLike) -> float:
    """Spearman rank correlation (Pearson over average ranks)."""
    p, y = _pair(preds, labels)
    return pearson(rankdata(p), rankdata(y))


_METRICS = {
    "accuracy": accuracy,
    "f1": f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def glue_metrics(task: str, preds: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The metrics of a registered GLUE/CLUE task, plus ``score``: their mean (the number GLUE reports).

    ``preds`` are class indices, or logits ``[N, num_labels]`` (argmax is taken), or floats for regression.
    """
    from alicemind.core.data.tasks import get_task

    spec = get_task(task)
    p = np.asarray(preds)
    if not spec.is_regression and p.ndim == 2:
        p = p.argmax(axis=-1)
    elif spec.is_regression and p.ndim == 2 and p.shape[-1] == 1:
        p = p[:, 0]
    result = {name: _METRICS[name](p, labels) for name in spec.metrics}
    result["score"] = float(np.mean(list(result.values())))
    return result
