"""ChildTuning as a callback of alicemind-core's training loop."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from alicemind.childtuning.fisher import LossFn, ParamFilter, compute_fisher_mask
from alicemind.childtuning.masking import GradientMasker
from alicemind.core.checkpoint import load_safetensors, save_safetensors
from alicemind.core.training.callbacks import TrainerCallback

#: File the D masks are written to in the trainer's output_dir, so a resumed run keeps the same child network.
MASK_FILE = "childtuning_masks.safetensors"


def _loss_of(outputs: Any) -> torch.Tensor:
    """The loss of a compute_loss result: a tensor, a mapping with 'loss' or an object with ``.loss``."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if loss is None:
        raise ValueError(f"compute_loss returned {type(outputs).__name__} without a loss")
    return loss


class ChildTuningCallback(TrainerCallback):
    """Attach ChildTuning-F or -D to ``alicemind.core.training.Trainer``.

    ``on_train_begin`` computes the D mask (one Fisher pass over ``trainer.train_dataloader`` with
    ``trainer.model``, using the trainer's ``compute_loss`` when it has one) unless masks were given, restored
    with ``load_state_dict``, or found in ``output_dir`` on a resumed run; a freshly computed mask is written to
    ``output_dir/childtuning_masks.safetensors``. ``before_optimizer_step`` (after unscaling and clipping, as in
    the original) masks the gradients in place, so it works with whatever optimizer the Trainer built.

    Args:
        mode: "F" or "D".
        reserve_p: keep probability (F) / child fraction (D).
        masks: precomputed D masks {name or parameter: bool mask}; skips the Fisher pass.
        param_filter: D-mode parameter predicate(name, param); default ``'layer' in name`` (the original).
        max_grad_norm: per-tensor clip of the Fisher pass; default the trainer config's ``max_grad_norm``
            (1.0 if unset or <= 0).
        loss_fn: (model, batch) -> loss for the Fisher pass; default the trainer's ``compute_loss`` or
            ``model(**batch).loss``.
        generator: torch.Generator for F-mode draws. Under torch.distributed with none given, one seeded from
            ``config.seed`` is created so every rank draws the same masks.
        sampler: F-mode mask sampler, "original" (default: the original's random stream) or "fast"
            (see ``alicemind.childtuning.masking.SAMPLERS``).
        progress: log the Fisher pass progress.
    """

    def __init__(
        self,
        mode: str,
        reserve_p: float,
        *,
        masks: Mapping[Any, torch.Tensor] | None = None,
        param_filter: ParamFilter | None = None,
        max_grad_norm: float | None = None,
        loss_fn: LossFn | None = None,
        generator: torch.Generator | None = None,
        progress: bool = True,
        sampler: str = "original",
    ) -> None:
        self.masker = GradientMasker(mode, reserve_p, generator=generator, sampler=sampler)
        if masks is not None and self.masker.mode != "D":
            raise ValueError("masks are only used by ChildTuning-D")
        self._pending_masks = dict(masks) if masks is not None else None
        self.masks_by_name: dict[str, torch.Tensor] | None = None
        self.param_filter = param_filter
        self.max_grad_norm = max_grad_norm
        self.loss_fn = loss_fn
        self.progress = progress

    @property
    def mode(self) -> str:
        return self.masker.mode

    @property
    def reserve_p(self) -> float:
        return self.masker.reserve_p

    def on_train_begin(self, trainer: Any) -> None:
        if self.mode == "F":
            self._sync_generator(trainer)
            return
        model = trainer.model
        mask_file = Path(trainer.output_dir) / MASK_FILE if getattr(trainer, "output_dir", None) else None
        if self._pending_masks is None and self.masker.masks is None:
            resumed = getattr(getattr(trainer, "state", None), "step", 0) > 0
            if resumed and mask_file is not None and mask_file.exists():
                self._pending_masks = load_safetensors(mask_file)
            else:
                self._pending_masks = compute_fisher_mask(
                    model,
                    trainer.train_dataloader,
                    self._fisher_loss(trainer),
                    reserve_p=self.reserve_p,
                    param_filter=self.param_filter,
                    max_grad_norm=self._clip_norm(trainer),
                    progress=self.progress,
                )
                if mask_file is not None and getattr(getattr(trainer, "dist", None), "is_main", True):
                    mask_file.parent.mkdir(parents=True, exist_ok=True)
                    save_safetensors(self._pending_masks, mask_file)
        if self._pending_masks is not None:
            self.masker.set_masks(self._pending_masks, model=model)
            names = {id(p): n for n, p in model.named_parameters()}
            self.masks_by_name = {names[id(p)]: m for p, m in (self.masker.masks or {}).items() if id(p) in names}
            self._pending_masks = None

    def before_optimizer_step(self, trainer: Any) -> None:
        self.masker.apply_(trainer.model.parameters())

    def state_dict(self) -> dict[str, Any]:
        """The D masks by parameter name (CPU), so a resumed run keeps its child network."""
        masks = {n: m.cpu() for n, m in (self.masks_by_name or {}).items()}
        return {"mode": self.mode, "reserve_p": self.reserve_p, "masks": masks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore masks saved by ``state_dict``; they are bound to the model at the next ``on_train_begin``."""
        if state.get("mode") != self.mode:
            raise ValueError(
                f"saved ChildTuning state is for mode {state.get('mode')!r}, this callback is {self.mode!r}"
            )
        if state.get("masks"):
            self._pending_masks = dict(state["masks"])
            self.masker.masks = None

    def _fisher_loss(self, trainer: Any) -> LossFn | None:
        if self.loss_fn is not None:
            return self.loss_fn
        compute_loss = getattr(trainer, "compute_loss", None)
        if compute_loss is None:
            return None
        return lambda model, batch: _loss_of(compute_loss(model, batch))

    def _clip_norm(self, trainer: Any) -> float:
        if self.max_grad_norm is not None:
            return self.max_grad_norm
        configured = getattr(getattr(trainer, "config", None), "max_grad_norm", None)
        return float(configured) if configured and configured > 0 else 1.0

    def _sync_generator(self, trainer: Any) -> None:
        dist = torch.distributed
        if self.masker.generator is not None or not (dist.is_available() and dist.is_initialized()):
            return
        device = next(trainer.model.parameters()).device
        seed = int(getattr(getattr(trainer, "config", None), "seed", 0)) + 1
        self.masker.generator = torch.Generator(device=device).manual_seed(seed)
