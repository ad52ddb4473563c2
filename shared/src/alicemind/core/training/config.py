"""Training-run settings and the run's resumable state."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Fields that do not change the trained weights: left out of a run's identity.
_NOT_RESULTS = (
    "output_dir", "device", "log_every", "eval_every", "save_every", "keep_last_n", "metric_for_best",
    "greater_is_better", "tensorboard", "progress_bar", "resume", "overwrite", "keep_final_checkpoint", "compile",
)  # fmt: skip


@dataclass
class TrainingConfig:
    """Everything the training loop needs besides the model, the data and the evaluation function.

    Give exactly one of ``max_steps`` (optimizer updates) or ``num_epochs``; at most one of ``warmup_steps`` and
    ``warmup_ratio``. ``precision="auto"`` picks bf16/fp16 on devices that run them natively and fp32 elsewhere.
    ``resume``: "auto" continues the run recorded in ``output_dir/run.json`` from its newest intact checkpoint if
    it is the same run (see :mod:`alicemind.core.training.run_manifest`) and refuses another run; "force"
    continues whatever run is there; a path continues from that checkpoint; None or "never" never resumes (and
    refuses a used ``output_dir``). ``overwrite=True`` starts fresh, deleting the previous run's checkpoints.
    Step intervals (log/eval) of 0 or None are off; the last step is always logged and evaluated (with an
    ``eval_fn``). ``save_every``: None checkpoints the last step only, 0 writes no checkpoints at all, N every N
    steps and the last. ``keep_final_checkpoint=False`` lets :meth:`Trainer.finalize` drop the last checkpoint
    once the family has written its model folder. ``compile=True`` runs each training forward and its backward
    through ``torch.compile`` (inductor; a string names another backend, e.g. ``"aot_eager"``); checkpoints and
    ``eval_fn`` keep the plain module, and the optimizer stays torch's fused kernel.
    """

    output_dir: str | None = None
    max_steps: int | None = None
    num_epochs: int | None = None
    per_device_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    layerwise_lr_decay: float | None = None
    scheduler: str = "linear"
    warmup_ratio: float | None = None
    warmup_steps: int | None = None
    max_grad_norm: float | None = 1.0
    precision: str = "auto"
    device: str | None = None
    compile: bool | str = False
    seed: int = 42
    log_every: int = 10
    eval_every: int | None = None
    save_every: int | None = None
    keep_last_n: int | None = None
    metric_for_best: str | None = None
    greater_is_better: bool | None = None
    tensorboard: bool = False
    progress_bar: bool = True
    resume: str | None = "auto"
    overwrite: bool = False
    keep_final_checkpoint: bool = True

    def __post_init__(self) -> None:
        if (self.max_steps is None) == (self.num_epochs is None):
            raise ValueError("TrainingConfig: give exactly one of max_steps and num_epochs")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"TrainingConfig: max_steps must be > 0, got {self.max_steps}")
        if self.num_epochs is not None and self.num_epochs <= 0:
            raise ValueError(f"TrainingConfig: num_epochs must be > 0, got {self.num_epochs}")
        if self.gradient_accumulation_steps < 1:
            raise ValueError(
                f"TrainingConfig: gradient_accumulation_steps must be >= 1, got {self.gradient_accumulation_steps}"
            )
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            raise ValueError("TrainingConfig: give warmup_steps or warmup_ratio, not both")
        if isinstance(self.compile, str):
            from torch._dynamo import list_backends

            backends = list_backends(exclude_tags=())
            if self.compile not in backends:
                raise ValueError(f"TrainingConfig: compile={self.compile!r} is not a torch.compile backend: {backends}")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"TrainingConfig: precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.keep_last_n is not None and self.keep_last_n < 1:
            raise ValueError(f"TrainingConfig: keep_last_n must be >= 1 or None, got {self.keep_last_n}")
        if self.save_every is not None and self.save_every < 0:
            raise ValueError(f"TrainingConfig: save_every must be >= 0 or None, got {self.save_every}")
        if self.overwrite and self.resume == "force":
            raise ValueError("TrainingConfig: overwrite=True starts fresh; it cannot go with resume='force'")
        if self.metric_for_best is not None and self.greater_is_better is None:
            # The usual convention: losses are minimised, everything else maximised.
            self.greater_is_better = "loss" not in self.metric_for_best
        self.adam_betas = tuple(self.adam_betas)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """Build from a plain dict (e.g. a recipe's YAML section), rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TrainingConfig: unknown field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def result_values(self) -> dict[str, Any]:
        """The fields that change what training produces (a run's identity); paths, logging, checkpoint
        cadence, device and resume settings are left out."""
        out = self.to_dict()
        for name in _NOT_RESULTS:
            out.pop(name, None)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        out = dataclasses.asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out


@dataclass
class TrainState:
    """Where a run stands; saved with every checkpoint as ``trainer_state.json``.

    ``epoch`` and ``batches_in_epoch`` locate the data position: the number of micro-batches of epoch ``epoch``
    this rank has consumed. ``loss`` is the last logged training loss (averaged over ranks and the log window).
    """

    step: int = 0
    max_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    loss: float | None = None
    best_metric: float | None = None
    best_step: int | None = None
    world_size: int = 1
    gradient_accumulation_steps: int = 1
    log_history: list[dict[str, float]] = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> TrainState:
        """Read a ``trainer_state.json``."""
        values = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
