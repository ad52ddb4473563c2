"""Schema-aware curriculum: pairs scored easy-to-hard and fed in that order under a pacing function.

Difficulty of a (question, SQL, table) pair (:func:`difficulty`): ``len(sel) + #aggregations + 2 * #conditions +
#distinct linked columns + #columns / 10``, ties broken by question length; the SQL's structure dominates, the
schema's size counts. Pacing (recipe key ``curriculum.pacing``) gives the fraction ``c(t)`` of the easiest pairs
that batch ``t`` may draw from, from ``start`` at step 0 to 1 at ``duration * max_steps``:
  * ``linear``: ``c(t) = start + (1 - start) * t / T``;
  * ``root``: ``c(t) = sqrt(start^2 + (1 - start^2) * t / T)`` (competence-based, Platanios et al. 2019);
  * ``step``: ``start`` raised in ``steps`` equal stages ("baby steps");
  * ``none``: ``c(t) = 1`` (every pair from the start: no curriculum).
Each batch is drawn uniformly from the available prefix with a generator seeded by (seed, epoch, step), so a
resumed run replays the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch

PACINGS = ("linear", "root", "step", "none")


def difficulty(sel: Sequence[int], agg: Sequence[int], conds: Sequence, linked_columns: int, num_columns: int,
               question_length: int) -> float:  # fmt: skip
    """The curriculum score of one pair (see the module docstring); larger is harder."""
    return (
        len(sel) + sum(1 for a in agg if a) + 2 * len(conds) + linked_columns + num_columns / 10 + question_length / 1e4
    )


def pacing_function(name: str, *, start: float, duration_steps: int, steps: int = 4) -> Callable[[int], float]:
    """``c(t)``: the fraction of the easy-to-hard order available at step ``t``."""
    if name not in PACINGS:
        raise ValueError(f"unknown pacing {name!r}; expected one of {', '.join(PACINGS)}")
    if not 0 < start <= 1:
        raise ValueError(f"curriculum start must be in (0, 1], got {start}")
    total = max(1, duration_steps)
    if name == "none":
        return lambda t: 1.0
    if name == "linear":
        return lambda t: min(1.0, start + (1 - start) * t / total)
    if name == "root":
        return lambda t: min(1.0, math.sqrt(start**2 + (1 - start**2) * t / total))
    stage = total / steps
    return lambda t: min(1.0, start + (1 - start) * math.floor(t / stage) / steps)


class CurriculumBatchSampler(torch.utils.data.Sampler):
    """``num_steps`` batches of dataset indices; batch ``t`` is drawn from the easiest ``c(t)`` of ``order``."""

    def __init__(self, order: Sequence[int], batch_size: int, num_steps: int, pacing: Callable[[int], float],
                 seed: int = 0):  # fmt: skip
        if batch_size < 1 or num_steps < 1:
            raise ValueError("batch_size and num_steps must be >= 1")
        self.order, self.batch_size, self.num_steps = list(order), batch_size, num_steps
        self.pacing, self.seed, self.epoch = pacing, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def available(self, step: int) -> int:
        """How many of the easiest pairs batch ``step`` draws from."""
        return min(len(self.order), max(self.batch_size, math.ceil(self.pacing(step) * len(self.order))))

    def __len__(self) -> int:
        return self.num_steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.num_steps):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + step)
            pool = self.available(step)
            picks = torch.randint(pool, (self.batch_size,), generator=g) if pool < self.batch_size else \
                torch.randperm(pool, generator=g)[: self.batch_size]  # fmt: skip
            yield [self.order[int(i)] for i in picks]
