"""PST settings and the cubic sparsity schedule (Li et al., IJCAI 2022, ``S4/PST/pst/utils.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PSTConfig:
    """Ranks, scales and the sparsity schedule of PST; the defaults are the original's argparse defaults.

    The effective weight is ``W = W0 + weight_beta * U V`` (rank ``weight_rank``); the importance score is
    ``S = |W| + mask_alpha1 * A B + mask_alpha2 * (R 1^T + 1 C^T)`` (rank ``mask_rank``). Sparsity ramps cubically
    from ``initial_sparsity`` to ``final_sparsity`` between ``initial_warmup * T`` and ``T - final_warmup * T``
    (fractions of the total step count T, unlike movement pruning's multiples of warm-up steps).
    """

    weight_rank: int = 8
    weight_beta: float = 1.0
    mask_rank: int = 8
    mask_alpha1: float = 1.0
    mask_alpha2: float = 1.0
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.9
    initial_warmup: float = 0.1
    final_warmup: float = 0.3

    def __post_init__(self) -> None:
        for name in ("weight_rank", "mask_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PSTConfig: {name} must be a positive integer, got {value!r}")
        for name in ("initial_sparsity", "final_sparsity"):
            value = getattr(self, name)
            # 1.0 would prune every weight of every converted matrix: the model would output its biases only.
            if not 0.0 <= value < 1.0:
                raise ValueError(f"PSTConfig: {name} must lie in [0, 1) (1.0 prunes every weight), got {value}")
        for name in ("initial_warmup", "final_warmup"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"PSTConfig: {name} is a fraction of the training steps in [0, 1], got {value}")
        if self.initial_warmup + self.final_warmup >= 1.0:
            raise ValueError(
                "PSTConfig: initial_warmup + final_warmup must be < 1 (no steps would be left for the ramp), got "
                f"{self.initial_warmup} + {self.final_warmup}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> PSTConfig:
        """Build from a plain dict (a recipe's ``pst`` section), rejecting unknown keys."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"PSTConfig: unknown field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)

    def sparsity_at(self, step: int, total_steps: int) -> float:
        """The scheduled sparsity after ``step`` of ``total_steps`` optimizer steps."""
        return sparsity_schedule(
            step,
            total_steps,
            initial_warmup=self.initial_warmup,
            final_warmup=self.final_warmup,
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
        )

    def final_window_start(self, total_steps: int) -> float:
        """Steps strictly after this value run at the final sparsity (the original's model-selection window)."""
        return total_steps - self.final_warmup * total_steps


def sparsity_schedule(
    step: int,
    total_steps: int,
    *,
    initial_warmup: float = 0.1,
    final_warmup: float = 0.3,
    initial_sparsity: float = 0.0,
    final_sparsity: float = 0.9,
) -> float:
    """The original's cubic schedule: ``s_0`` up to ``i*T``, ``s_f`` after ``T - f*T``, a cubic ramp between.

    ``s_t = s_f + (s_0 - s_f) * (1 - (t - i*T) / (T - (i + f) * T)) ** 3`` on the ramp.
    """
    if total_steps <= 0:
        raise ValueError(f"sparsity_schedule: total_steps must be > 0, got {total_steps}")
    if initial_warmup + final_warmup >= 1.0:
        raise ValueError("sparsity_schedule: initial_warmup + final_warmup must be < 1")
    start = initial_warmup * total_steps
    if step <= start:
        return float(initial_sparsity)
    if step > total_steps - final_warmup * total_steps:
        return float(final_sparsity)
    remaining = 1.0 - (step - start) / (total_steps - (initial_warmup + final_warmup) * total_steps)
    return float(final_sparsity + (initial_sparsity - final_sparsity) * remaining**3)
