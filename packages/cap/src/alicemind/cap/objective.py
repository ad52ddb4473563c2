"""CapObjective: the full CAP training loss of one batch (task CE, distillation, the three contrastive modules,
the soft-movement L1) and the bank-filling passes, shared by the pruning loop and both trainer hooks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.cap.adapters import EncoderAdapter, RepresentationCapture, find_adapter
from alicemind.cap.bank import RepresentationBank, encode_into_bank
from alicemind.cap.config import CapConfig
from alicemind.cap.contrastive import ContrastiveLoss, distillation_loss


def _get(outputs: Any, key: str) -> Any:
    if isinstance(outputs, Mapping):
        return outputs.get(key)
    return getattr(outputs, key, None)


def num_labels_of(model: nn.Module) -> int | None:
    """The label count a model declares (config.num_labels), if any."""
    config = getattr(model, "config", None)
    value = getattr(config, "num_labels", None)
    return int(value) if isinstance(value, int) else None


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch without the bank's ``idx`` column and without labels (what the teacher is called with)."""
    return {k: v for k, v in batch.items() if k not in ("idx", "labels", "start_positions", "end_positions")}


class CapObjective:
    """Everything CAP adds to a student's task loss.

    ``total = ce_weight * task_loss + kd_weight * KD + contrastive(PrC, SnC, FiC) + soft L1``. The student's
    representation is captured by a hook (see :class:`RepresentationCapture`); batches carry an ``idx`` column
    (dataset index) for the bank. ``teacher`` is the fine-tuned model (needed for distillation and FiC).
    """

    def __init__(
        self,
        student: nn.Module,
        config: CapConfig,
        *,
        num_examples: int,
        teacher: nn.Module | None = None,
        adapter: EncoderAdapter | None = None,
        representation: str | None = None,
        bank_dir: str | Path | None = None,
        movement=None,
        log=print,
    ) -> None:
        self.config, self.student, self.teacher, self.movement, self.log = config, student, teacher, movement, log
        self.adapter = find_adapter(student, adapter)
        needs_teacher = config.use_distill or config.use_fic
        if needs_teacher and teacher is None:
            raise ValueError("CAP with distillation or FiC needs the fine-tuned teacher: pass teacher=MODEL")
        if teacher is not None:
            s, t = num_labels_of(student), num_labels_of(teacher)
            if s is not None and t is not None and s != t:
                raise ValueError(
                    f"the teacher has {t} labels and the student {s}: the teacher must be fine-tuned on the same task"
                )
            teacher.eval().requires_grad_(False)
        self.capture = RepresentationCapture(student, self.adapter, representation)
        self.teacher_capture = None
        if teacher is not None and config.use_fic:
            self.teacher_capture = RepresentationCapture(teacher, find_adapter(teacher), representation)
        self.contrastive = ContrastiveLoss.from_config(config)
        self.num_examples, self.bank_dir = num_examples, bank_dir
        self.bank: RepresentationBank | None = None
        self.last_parts: dict[str, float] = {}
        self.position: Any = None  # set by the trainer hooks: names the extra-example draw of this batch
        self.student_passes = 0  # the first student pass fills the pre-trained bank, later ones add snapshots

    # -- banks --------------------------------------------------------------------------------------------------
    def _ensure_bank(self, model: nn.Module, capture: RepresentationCapture, batch: Mapping[str, Any]) -> None:
        if self.bank is not None:
            return
        device = next(model.parameters()).device
        from alicemind.core.training import move_to_device

        was = model.training
        model.eval()
        with torch.no_grad():
            model(**move_to_device(dict(batch), device))
        model.train(was)
        hidden = capture.take().shape[-1]
        self.bank = RepresentationBank(
            self.num_examples, hidden, max_snapshots=self.config.max_snapshots, dtype=self.config.bank_dtype,
            directory=self.bank_dir, memmap_threshold_bytes=self.config.memmap_threshold_bytes, log=self.log,
        )  # fmt: skip

    def open_bank(self, hidden: int) -> RepresentationBank:
        """Open (or create) the bank in ``bank_dir``: a resumed run reads the banks it wrote."""
        self.bank = RepresentationBank(
            self.num_examples, hidden, max_snapshots=self.config.max_snapshots, dtype=self.config.bank_dtype,
            directory=self.bank_dir, memmap_threshold_bytes=self.config.memmap_threshold_bytes, log=self.log,
        )  # fmt: skip
        return self.bank

    def fill_teacher_bank(self, batches: Iterable[Mapping[str, Any]], *, progress: bool = True) -> None:
        """Encode the training set with the teacher (FiC bank; once, before training)."""
        if self.teacher_capture is None:
            return
        batches = list(batches)
        self._ensure_bank(self.teacher, self.teacher_capture, batches[0])
        encode_into_bank(self.teacher, self.teacher_capture, batches, self.bank, "teacher", eval_mode=True,
                         progress=progress, description="CAP bank: teacher")  # fmt: skip

    def fill_student_bank(self, batches: Iterable[Mapping[str, Any]], tag: Any, *, progress: bool = True) -> None:
        """Encode the training set with the current student: the pre-trained bank on the first call, a snapshot
        (tagged ``tag``) after that. Skipped when the module it feeds is switched off."""
        batches = list(batches)
        first = self.student_passes == 0
        self.student_passes += 1
        if (first and not self.config.use_prc) or (not first and not self.config.use_snc):
            return
        if not first and self.config.max_snapshots == 0:
            return
        self._ensure_bank(self.student, self.capture, batches[0])
        if first:
            name = "pretrained"
        else:
            self.bank.begin_snapshot(tag)
            name = "snapshots"
        encode_into_bank(self.student, self.capture, batches, self.bank, name, eval_mode=self.config.bank_eval_mode,
                         progress=progress, description=f"CAP bank: {name} {tag}")  # fmt: skip

    # -- loss ---------------------------------------------------------------------------------------------------
    def teacher_outputs(self, batch: Mapping[str, Any]) -> Any:
        with torch.no_grad():
            return self.teacher(**model_inputs(batch))

    def loss(self, batch: Mapping[str, Any], outputs: Any, task_loss: torch.Tensor | None = None) -> torch.Tensor:
        """The CAP loss of a batch the student has just run on (its representation is taken from the hook)."""
        cfg = self.config
        query = self.capture.take()
        task_loss = _get(outputs, "loss") if task_loss is None else task_loss
        if task_loss is None:
            raise ValueError("the student output has no loss: put labels in the batch")
        total = cfg.ce_weight * task_loss
        parts = {"ce": float(task_loss.detach())}
        if cfg.use_distill and self.teacher is not None:
            t_out = self.teacher_outputs(batch)
            pairs = [("logits", "logits")] if _get(outputs, "logits") is not None else []
            if not pairs:
                pairs = [("start_logits", "start_logits"), ("end_logits", "end_logits")]
            kd = torch.stack(
                [distillation_loss(_get(outputs, s), _get(t_out, t), cfg.kd_temperature) for s, t in pairs]
            ).mean()  # QA: the mean of the start and end terms
            total = total + cfg.kd_weight * kd
            parts["kd"] = float(kd.detach())
        if cfg.uses_contrast and self.bank is not None:
            idx = batch.get("idx")
            if idx is None:
                raise ValueError("CAP's contrastive modules need an 'idx' column (dataset index) in every batch")
            labels = batch.get("labels") if cfg.supervised else None
            contrast = self.contrastive(query, idx, labels, self.bank, self.position)
            total = total + contrast.to(total.dtype)
            parts["contrastive"] = float(contrast.detach())
        if self.movement is not None:
            reg = self.movement.regularization()
            total = total + reg
            parts["l1"] = float(reg.detach())
        self.last_parts = parts
        return total

    def remove(self) -> None:
        self.capture.remove()
        if self.teacher_capture is not None:
            self.teacher_capture.remove()
