"""CAP for a Hugging Face ``transformers.Trainer`` (needs the ``[transformers]`` extra)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alicemind.cap.objective import CapObjective


def apply_cap_to_hf_trainer(
    trainer: Any,
    objective: CapObjective,
    bank_batches: Iterable[Mapping[str, Any]],
    *,
    refresh_every_epoch: bool = True,
    progress: bool = True,
) -> Any:
    """Add the CAP loss, banks and movement schedule to ``trainer``; returns the added callback.

    The trainer instance's ``compute_loss`` is wrapped (nothing is patched at class level): the original value is
    the task loss, and the CAP objective replaces it. The batches must carry an ``idx`` column; pass
    ``remove_unused_columns=False`` in the TrainingArguments so the Trainer keeps it (the model never sees it: a
    hook takes it out of the call). Banks are filled at train begin and, with ``refresh_every_epoch``, a snapshot is
    added at each later epoch begin; the movement threshold follows ``state.global_step``.
    """
    from transformers import TrainerCallback

    batches = list(bank_batches)
    original = trainer.compute_loss

    def compute_loss(model, inputs, return_outputs=False, **kwargs):
        loss, outputs = original(model, inputs, return_outputs=True, **kwargs)
        objective.position = None  # the call count names the extra-example draw here
        total = objective.loss(inputs, outputs, loss)
        return (total, outputs) if return_outputs else total

    trainer.compute_loss = compute_loss

    class CapHFCallback(TrainerCallback):
        """Fills the banks and steps the movement schedule."""

        def __init__(self) -> None:
            self.objective = objective
            self.epochs_seen = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if objective.config.uses_contrast:
                objective.fill_teacher_bank(batches, progress=progress)
            if objective.movement is not None:
                objective.movement.set_step(state.global_step)

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not objective.config.uses_contrast:
                return
            if self.epochs_seen == 0 or refresh_every_epoch:
                objective.fill_student_bank(batches, tag=self.epochs_seen, progress=progress)
            self.epochs_seen += 1

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if objective.movement is not None:
                objective.movement.set_step(state.global_step)

    callback = CapHFCallback()
    trainer.add_callback(callback)
    return callback
