"""ChildTuning for a Hugging Face ``transformers.Trainer`` (needs the ``[transformers]`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from alicemind.childtuning.fisher import ParamFilter, compute_fisher_mask
from alicemind.childtuning.masking import GradientMasker


def innermost_torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """Follow ``.optimizer`` through wrappers (accelerate's AcceleratedOptimizer, ...) to the torch optimizer."""
    current = optimizer
    while isinstance(getattr(current, "optimizer", None), torch.optim.Optimizer):
        current = current.optimizer
    if not isinstance(current, torch.optim.Optimizer):
        raise TypeError(
            f"ChildTuning needs the trainer's optimizer to be (or wrap) a torch.optim.Optimizer, "
            f"got {type(optimizer).__name__}"
        )
    return current


def apply_child_tuning_to_hf_trainer(
    trainer: Any,
    mode: str,
    reserve_p: float,
    *,
    masks: Mapping[Any, torch.Tensor] | None = None,
    param_filter: ParamFilter | None = None,
    max_grad_norm: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    sampler: str = "original",
) -> Any:
    """Add ChildTuning to a ``transformers.Trainer``; returns the added callback.

    At train begin (D mode) the Fisher mask is computed with the trainer's own ``get_train_dataloader()`` and
    ``compute_loss`` (so custom losses and column removal apply), unless ``masks`` is given. The gradients are
    then masked by a step pre-hook registered on the trainer's torch optimizer instance (through accelerate's
    wrapper), i.e. after gradient clipping and fp16 unscaling, right before the update. Nothing is patched at
    class level; the hook is removed at train end.

    ``max_grad_norm`` (the Fisher pass's per-tensor clip) defaults to ``args.max_grad_norm`` (1.0 if <= 0).
    ``sampler`` picks the F-mode mask sampler: "original" (default, the original's random stream) or "fast".
    """
    from transformers import TrainerCallback

    masker = GradientMasker(mode, reserve_p, generator=generator, sampler=sampler)
    if masks is not None and masker.mode != "D":
        raise ValueError("masks are only used by ChildTuning-D")

    class ChildTuningHFCallback(TrainerCallback):
        """Computes the D mask at train begin and masks gradients before each optimizer step."""

        def __init__(self) -> None:
            self.masker = masker
            self.masks_by_name: dict[str, torch.Tensor] | None = dict(masks) if masks is not None else None
            self._handle: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model = trainer.model
            if self.masker.mode == "D":
                if self.masks_by_name is None:
                    clip = max_grad_norm if max_grad_norm is not None else args.max_grad_norm
                    self.masks_by_name = compute_fisher_mask(
                        model,
                        trainer.get_train_dataloader(),
                        lambda m, batch: trainer.compute_loss(m, batch),
                        reserve_p=self.masker.reserve_p,
                        param_filter=param_filter,
                        max_grad_norm=clip if clip and clip > 0 else 1.0,
                        device=args.device,
                        progress=progress,
                    )
                self.masker.set_masks(self.masks_by_name, model=model)
            if self._handle is not None:
                self._handle.remove()
            optimizer = innermost_torch_optimizer(kwargs.get("optimizer") or trainer.optimizer)
            self._handle = optimizer.register_step_pre_hook(self._mask_before_step)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._handle is not None:
                self._handle.remove()
                self._handle = None

        def _mask_before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.masker.apply_(p for group in optimizer.param_groups for p in group["params"])

    callback = ChildTuningHFCallback()
    trainer.add_callback(callback)
    return callback
