"""PST's sparsity schedule as a callback of alicemind-core's Trainer."""

from __future__ import annotations

from typing import Any

from torch import nn

from alicemind.core.training.callbacks import TrainerCallback
from alicemind.pst.config import PSTConfig
from alicemind.pst.convert import sparse_layers


class PSTSchedule:
    """Applies ``config``'s cubic schedule to every SparseLinear of a model; framework-neutral core of the
    callbacks. ``history`` collects ``(step, sparsity, metrics)`` of every evaluation."""

    def __init__(self, config: PSTConfig | None = None, total_steps: int | None = None) -> None:
        self.config = config or PSTConfig()
        self.total_steps = total_steps
        self.sparsity = self.config.initial_sparsity
        self.history: list[dict[str, Any]] = []

    def bind(self, model: nn.Module, total_steps: int) -> None:
        """Fix the step count (unless given at construction) and check the model has SparseLinear layers."""
        if self.total_steps is None:
            self.total_steps = int(total_steps)
        if not any(True for _ in sparse_layers(model)):
            raise ValueError("PST callback: the model has no SparseLinear (call convert_to_pst first)")

    def apply(self, model: nn.Module, step: int) -> float:
        """Set the scheduled sparsity for the forward passes after ``step`` completed optimizer steps.

        The layers only recompute their masks when the value (or their scores) actually changed.
        """
        if self.total_steps is None:
            raise RuntimeError("PST callback used before bind()")
        self.sparsity = self.config.sparsity_at(step, self.total_steps)
        for _, layer in sparse_layers(model):
            layer.sparsity = self.sparsity
        return self.sparsity

    def record(self, step: int, metrics: dict[str, float]) -> None:
        """Remember an evaluation with the sparsity it ran at."""
        self.history.append({"step": step, "sparsity": self.sparsity, **metrics})

    def in_final_window(self, step: int) -> bool:
        """Whether ``step`` lies where the original selects its model (sparsity at target)."""
        return self.total_steps is not None and step > self.config.final_window_start(self.total_steps)

    def best_in_final_window(self, metric: str, greater_is_better: bool = True) -> dict[str, Any] | None:
        """The best recorded evaluation inside the final window (the original's reported number), or None."""
        inside = [h for h in self.history if self.in_final_window(h["step"]) and metric in h]
        if not inside:
            return None
        return (max if greater_is_better else min)(inside, key=lambda h: h[metric])


class PSTCallback(TrainerCallback):
    """Drive PST's sparsity from ``alicemind.core.training.Trainer``.

    At train begin (also after a resume) the sparsity for ``trainer.state.step`` is set; after every optimizer step
    the schedule's next value is (the original updated it after each step, so the first forward runs at ``s_0``).
    ``total_steps`` defaults to the trainer's ``max_steps``. Evaluations are kept in ``schedule.history``.
    """

    def __init__(self, config: PSTConfig | None = None, total_steps: int | None = None) -> None:
        self.schedule = PSTSchedule(config, total_steps)

    @property
    def sparsity(self) -> float:
        return self.schedule.sparsity

    def on_train_begin(self, trainer: Any) -> None:
        self.schedule.bind(trainer.model, trainer.max_steps)
        self.schedule.apply(trainer.model, trainer.state.step)

    def on_step_end(self, trainer: Any) -> None:
        self.schedule.apply(trainer.model, trainer.state.step)

    def on_evaluate(self, trainer: Any, metrics: dict[str, float]) -> None:
        self.schedule.record(trainer.state.step, metrics)
