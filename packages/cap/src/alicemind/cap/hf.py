"""CAP for a Hugging Face ``transformers.Trainer`` (needs the ``[transformers]`` extra)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from alicemind.cap.callbacks import BANK_DIR
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
    added at each later epoch begin; the movement threshold follows ``state.global_step``. The banks live in
    ``args.output_dir/cap_bank`` (unless the objective has a ``bank_dir``): ``trainer.train(resume_from_checkpoint=
    ...)`` reopens them, drops snapshots taken after the checkpoint and draws the same extra examples (named by the
    optimizer step), so the run continues with the same banks and masks.
    """
    from transformers import TrainerCallback

    batches = list(bank_batches)
    original = trainer.compute_loss
    counter = {"micro": 0}

    def compute_loss(model, inputs, return_outputs=False, **kwargs):
        loss, outputs = original(model, inputs, return_outputs=True, **kwargs)
        if model.training:  # the draw is named by the optimizer step and the micro-batch in it: resumes repeat it
            objective.position = f"{trainer.state.global_step}-{counter['micro']}"
            counter["micro"] += 1
        else:
            objective.position = None
        total = objective.loss(inputs, outputs, loss)
        return (total, outputs) if return_outputs else total

    trainer.compute_loss = compute_loss

    class CapHFCallback(TrainerCallback):
        """Fills the banks (or reopens them on resume) and steps the movement schedule."""

        def __init__(self) -> None:
            self.objective = objective
            self.epochs_seen = 0
            self.skip_epoch_begin = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if objective.bank_dir is None:
                objective.bank_dir = Path(args.output_dir) / BANK_DIR
            bank_meta = Path(objective.bank_dir) / "bank.json"
            if state.global_step > 0 and objective.config.uses_contrast and bank_meta.is_file():
                self._reopen(args, state, bank_meta, kwargs.get("train_dataloader"))
            elif objective.config.uses_contrast:
                objective.fill_teacher_bank(batches, progress=progress)
            if objective.movement is not None:
                objective.movement.set_step(state.global_step)

        def _reopen(self, args: Any, state: Any, bank_meta: Path, loader: Any) -> None:
            """A resumed run: the banks written before the checkpoint, the snapshots of later epochs dropped."""
            loader = loader if loader is not None else trainer.get_train_dataloader()
            steps_per_epoch = max(1, -(-len(loader) // args.gradient_accumulation_steps))  # as the Trainer counts
            epoch, into = divmod(state.global_step, steps_per_epoch)
            bank = objective.open_bank(int(json.loads(bank_meta.read_text(encoding="utf-8"))["hidden"]))
            # an epoch's snapshot is taken before its first step: kept if that step is before the checkpoint
            keep = epoch if into else epoch - 1
            bank.drop_snapshots_after(keep)
            objective.student_passes = max(1, keep + 1)
            self.epochs_seen = epoch
            self.skip_epoch_begin = bool(into)  # the resumed epoch's snapshot already exists

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not objective.config.uses_contrast:
                return
            if self.skip_epoch_begin:
                self.skip_epoch_begin = False
            elif self.epochs_seen == 0 or refresh_every_epoch:
                objective.fill_student_bank(batches, tag=self.epochs_seen, progress=progress)
            self.epochs_seen += 1

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            counter["micro"] = 0
            if objective.movement is not None:
                objective.movement.set_step(state.global_step)

    callback = CapHFCallback()
    trainer.add_callback(callback)
    return callback
