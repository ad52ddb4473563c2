"""PST's sparsity schedule for a Hugging Face ``transformers.Trainer`` (needs the ``[transformers]`` extra)."""

from __future__ import annotations

from typing import Any

from alicemind.pst.callbacks import PSTSchedule
from alicemind.pst.config import PSTConfig


def pst_hf_callback(config: PSTConfig | None = None, total_steps: int | None = None) -> Any:
    """A ``transformers.TrainerCallback`` that applies the schedule after every optimizer step.

    ``total_steps`` defaults to the trainer's ``state.max_steps``. The model must already be converted with
    ``convert_to_pst`` before the Trainer is built, so its optimizer only sees the PST tensors (and named heads).
    """
    from transformers import TrainerCallback

    class PSTHFCallback(TrainerCallback):
        """Sets the scheduled sparsity on every SparseLinear at train begin and after each optimizer step."""

        def __init__(self) -> None:
            self.schedule = PSTSchedule(config, total_steps)

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.schedule.bind(model, state.max_steps)
            self.schedule.apply(model, state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.schedule.apply(model, state.global_step)

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            self.schedule.record(state.global_step, dict(metrics or {}))

    return PSTHFCallback()


def apply_pst_to_hf_trainer(trainer: Any, config: PSTConfig | None = None, total_steps: int | None = None) -> Any:
    """Add :func:`pst_hf_callback` to ``trainer``; returns the callback."""
    callback = pst_hf_callback(config, total_steps)
    trainer.add_callback(callback)
    return callback
