"""CAP as a callback of alicemind-core's Trainer (unstructured CAP-m / CAP-soft, and CAP-f's retraining)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from alicemind.cap.objective import CapObjective
from alicemind.core.training.callbacks import TrainerCallback

BANK_DIR = "cap_bank"


class CapCallback(TrainerCallback):
    """Adds the CAP loss through ``extra_loss`` and drives the banks and the movement schedule.

    ``bank_batches`` is a sequential pass over the training set (each batch with an ``idx`` column). At train begin
    the teacher bank is filled (FiC) and the pre-trained bank from the untouched student (PrC); with
    ``refresh_every_epoch`` (the unstructured original) a snapshot is added at the start of every later epoch
    (SnC). The bank lives in ``output_dir/cap_bank`` (memory maps): a resumed run reopens it, drops snapshots
    newer than the checkpoint's epoch and continues; masks follow from the restored scores and step.
    """

    def __init__(
        self,
        objective: CapObjective,
        bank_batches: Iterable[Mapping[str, Any]],
        *,
        refresh_every_epoch: bool = True,
        progress: bool = True,
    ) -> None:
        self.objective = objective
        self.bank_batches = list(bank_batches)
        self.refresh_every_epoch = refresh_every_epoch
        self.progress = progress
        self._bank_epoch: int | None = None

    def on_train_begin(self, trainer: Any) -> None:
        obj = self.objective
        output_dir = getattr(trainer, "output_dir", None)
        if obj.bank_dir is None and output_dir is not None:
            obj.bank_dir = Path(output_dir) / BANK_DIR
        state = trainer.state
        resumed = state.step > 0 and obj.bank_dir is not None and (Path(obj.bank_dir) / "bank.json").is_file()
        if resumed:
            meta_hidden = self._hidden_from_disk(Path(obj.bank_dir))
            bank = obj.open_bank(meta_hidden)
            bank.drop_snapshots_after(state.epoch)
            obj.student_passes = max(obj.student_passes, 1)
            self._bank_epoch = state.epoch
        elif obj.config.uses_contrast:
            obj.fill_teacher_bank(self.bank_batches, progress=self.progress)
            obj.fill_student_bank(self.bank_batches, tag=0, progress=self.progress)
            self._bank_epoch = 0
        if obj.movement is not None:
            obj.movement.set_step(state.step)

    @staticmethod
    def _hidden_from_disk(folder: Path) -> int:
        import json

        return int(json.loads((folder / "bank.json").read_text(encoding="utf-8"))["hidden"])

    def extra_loss(self, trainer: Any, batch: Any, outputs: Any) -> torch.Tensor:
        obj = self.objective
        query = obj.capture.take()  # this batch's representation, before a bank pass overwrites the hook's value
        epoch = trainer.state.epoch
        if self.refresh_every_epoch and obj.config.uses_contrast and self._bank_epoch is not None:
            if epoch > self._bank_epoch:
                obj.fill_student_bank(self.bank_batches, tag=epoch, progress=self.progress)
                self._bank_epoch = epoch
        obj.capture.value = query
        obj.position = f"{trainer.state.epoch}-{trainer.state.batches_in_epoch}"
        task_loss = outputs.loss if hasattr(outputs, "loss") else outputs["loss"]
        return obj.loss(batch, outputs, task_loss) - task_loss

    def on_step_end(self, trainer: Any) -> None:
        if self.objective.movement is not None:
            self.objective.movement.set_step(trainer.state.step)
