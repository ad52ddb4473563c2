"""Hook points of the training loop.

Techniques (ChildTuning, CAP, PST, ...) attach here instead of forking the loop. Every method receives the
running ``Trainer`` so a callback can reach ``trainer.model``, ``trainer.optimizer``, ``trainer.scheduler``,
``trainer.state`` and ``trainer.train_dataloader``.
"""

from __future__ import annotations

from typing import Any

import torch


class TrainerCallback:
    """Base class: override only the hooks you need; every default does nothing."""

    def on_train_begin(self, trainer: Any) -> None:
        """After model, optimizer and scheduler are built (and a resume is restored), before the first step."""

    def extra_loss(self, trainer: Any, batch: Any, outputs: Any) -> torch.Tensor | None:
        """An additional loss term added to the task loss of this micro-batch (before scaling/accumulation)."""
        return None

    def after_backward(self, trainer: Any) -> None:
        """After each micro-batch's backward pass (gradients may still be scaled under fp16)."""

    def before_optimizer_step(self, trainer: Any) -> None:
        """After gradients are unscaled and clipped, right before ``optimizer.step()``."""

    def on_step_end(self, trainer: Any) -> None:
        """After the optimizer and scheduler stepped and gradients were zeroed."""

    def on_evaluate(self, trainer: Any, metrics: dict[str, float]) -> None:
        """After an evaluation, with its metrics."""

    def on_train_end(self, trainer: Any) -> None:
        """After the last step."""
