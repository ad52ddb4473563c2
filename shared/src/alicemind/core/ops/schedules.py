"""Learning-rate schedules as ``LambdaLR`` multipliers of each group's base LR (so ``state_dict`` round-trips).

``step`` below is the number of optimizer updates already done: the k-th update uses the multiplier at k - 1,
as in Hugging Face's schedules.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("linear", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt", "noam", "cosine")


def _warmup(step: int, warmup: int) -> float | None:
    return step / warmup if step < warmup else None


def _linear(step: int, warmup: int, total: int, power: float) -> float:
    w = _warmup(step, warmup)
    if w is not None:
        return w
    remaining = max(0.0, (total - step) / max(1, total - warmup))
    return remaining**power


def _constant(step: int, warmup: int, total: int, power: float) -> float:
    w = _warmup(step, warmup)
    return 1.0 if w is None else w


def _inverse_sqrt(step: int, warmup: int, total: int, power: float) -> float:
    # Noam: lr * min(step^-0.5, step * warmup^-1.5), times sqrt(warmup) so that the peak (step = warmup) is lr.
    if step == 0:
        return 0.0
    return min(step**-0.5, step * warmup**-1.5) * math.sqrt(warmup)


def _cosine(step: int, warmup: int, total: int, power: float) -> float:
    w = _warmup(step, warmup)
    if w is not None:
        return w
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


_FACTORS: dict[str, Callable[[int, int, int, float], float]] = {
    "linear": lambda s, w, t, p: _linear(s, w, t, 1.0),
    "polynomial": _linear,
    "constant": lambda s, w, t, p: 1.0,
    "constant_with_warmup": _constant,
    "inverse_sqrt": _inverse_sqrt,
    "noam": _inverse_sqrt,
    "cosine": _cosine,
}


def resolve_warmup(num_training_steps: int, warmup_steps: int | None, warmup_ratio: float | None) -> int:
    """Warm-up length in steps from either an absolute count or a fraction of training (rounded up)."""
    if warmup_steps is not None and warmup_ratio is not None:
        raise ValueError("give warmup_steps or warmup_ratio, not both")
    if warmup_ratio is not None:
        if not 0.0 <= warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must lie in [0, 1], got {warmup_ratio}")
        return math.ceil(warmup_ratio * num_training_steps)
    if warmup_steps is not None and warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    return warmup_steps or 0


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    num_training_steps: int,
    warmup_steps: int | None = None,
    warmup_ratio: float | None = None,
    power: float = 1.0,
) -> LambdaLR:
    """A ``LambdaLR`` for one of :data:`SCHEDULES`, each with linear warm-up from 0.

    linear / polynomial: decay to 0 at ``num_training_steps`` (polynomial raises the remaining fraction to
    ``power``); constant_with_warmup: 1 after warm-up; inverse_sqrt (alias noam): ``sqrt(warmup / step)`` after
    warm-up; cosine: half a cosine from 1 to 0.
    """
    key = name.lower()
    if key not in _FACTORS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULES)}")
    if num_training_steps <= 0:
        raise ValueError(f"num_training_steps must be > 0, got {num_training_steps}")
    warmup = resolve_warmup(num_training_steps, warmup_steps, warmup_ratio)
    if key in ("inverse_sqrt", "noam") and warmup == 0:
        raise ValueError(f"the {key!r} schedule needs warmup_steps > 0 (its peak sits at the end of warm-up)")
    factor = _FACTORS[key]

    def multiplier(step: int) -> float:
        return factor(step, warmup, num_training_steps, power)

    return LambdaLR(optimizer, multiplier)
