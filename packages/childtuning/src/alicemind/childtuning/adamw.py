"""ChildTuningAdamW: a standalone AdamW with the ChildTuning gradient mask inside its step.

The update follows the AdamW of transformers <= 4.x that the original ChildTuning code copied:
step size lr * sqrt(1 - b2^t) / (1 - b1^t) (with ``correct_bias``) and p <- p - step * m / (sqrt(v) + eps).
Two behaviours of the original are available as flags (see ``ORIGINAL_QUIRKS``):

- ``quirk_decay_masked_entries``: in D mode, decoupled weight decay also shrinks entries whose gradient is
  masked (the original decays every entry). Default False: D-masked entries are left exactly untouched.
- ``quirk_decay_after_update``: decay uses the already-updated weight, p <- p - lr * wd * p after the Adam
  step (the HF-AdamW ordering, huggingface/transformers#14539). Default False: decay before the update, as
  ``torch.optim.AdamW`` does.

In F mode the mask is random per step, so decay is applied to all entries in both settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from alicemind.childtuning.masking import GradientMasker

#: Flags that reproduce the original ChildTuningAdamW's behaviour: ``ChildTuningAdamW(..., **ORIGINAL_QUIRKS)``.
ORIGINAL_QUIRKS: dict[str, bool] = {"quirk_decay_masked_entries": True, "quirk_decay_after_update": True}


class ChildTuningAdamW(torch.optim.Optimizer):
    """AdamW whose gradients are ChildTuning-masked inside ``step()``.

    Args:
        params: parameters or parameter groups.
        lr, betas, eps, weight_decay, correct_bias: as the HF AdamW the original copied (its class default
            eps is 1e-6; the original runs passed 1e-8 through TrainingArguments).
        mode: "F", "D" (see ``ChildTuningOptimizer``) or None (default): plain AdamW, no masking, as the
            original class's default (``mode=None`` in ChildTuning/ChildTuningOptimizer.py).
        reserve_p: keep probability (F) / child fraction (D); default 1.0 as the original's.
        masks: D mode: {parameter or name: bool mask}; names need ``model``.
        model: resolves name-keyed masks.
        generator: optional torch.Generator for F-mode draws.
        sampler: F-mode mask sampler, "original" (default: the original's random stream) or "fast"
            (see ``alicemind.childtuning.masking.SAMPLERS``).
        quirk_decay_masked_entries: decay D-masked entries too (original behaviour). Default False.
        quirk_decay_after_update: decay after the Adam update (original HF ordering). Default False.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
        *,
        mode: str | None = None,
        reserve_p: float = 1.0,
        masks: Mapping[nn.Parameter | str, torch.Tensor] | None = None,
        model: nn.Module | None = None,
        generator: torch.Generator | None = None,
        sampler: str = "original",
        quirk_decay_masked_entries: bool = False,
        quirk_decay_after_update: bool = False,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "correct_bias": correct_bias}
        super().__init__(params, defaults)
        self.masker: GradientMasker | None = None
        if mode is not None:
            self.masker = GradientMasker(mode, reserve_p, masks, model=model, generator=generator, sampler=sampler)
        elif masks is not None:
            raise ValueError("masks are only used by ChildTuning-D; pass mode='D'")
        self.quirk_decay_masked_entries = quirk_decay_masked_entries
        self.quirk_decay_after_update = quirk_decay_after_update

    @property
    def mode(self) -> str | None:
        """'F', 'D', or None (plain AdamW)."""
        return None if self.masker is None else self.masker.mode

    def set_masks(self, masks: Mapping[nn.Parameter | str, torch.Tensor], *, model: nn.Module | None = None) -> None:
        """Install the D-mode masks (e.g. the output of ``compute_fisher_mask``)."""
        if self.masker is None:
            raise ValueError("set_masks() is only valid in mode 'D' (this optimizer was built with mode=None)")
        self.masker.set_masks(masks, model=model)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """Mask the gradients, then do one AdamW update."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if self.masker is not None:
                self.masker.apply_(params)
            self._update_group(group, params)
        return loss

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        grads, exp_avgs, exp_avg_sqs, step_sizes = [], [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            t = state["step"]
            step_size = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t) if group["correct_bias"] else lr
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            step_sizes.append(-step_size)

        if wd != 0.0 and not self.quirk_decay_after_update:
            self._decay(params, lr * wd, original_form=False)
        # Moments from the masked gradient, vectorised over the group's tensors.
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, step_sizes)
        if wd != 0.0 and self.quirk_decay_after_update:
            self._decay(params, lr * wd, original_form=True)

    def _decay(self, params: list[torch.Tensor], rate: float, *, original_form: bool) -> None:
        masker = self.masker
        spare_masked = masker is not None and masker.mode == "D" and not self.quirk_decay_masked_entries
        full = []
        for p in params:
            mask = masker.keep_mask(p) if masker is not None and spare_masked else None
            if mask is None:
                full.append(p)
            else:
                # Only the child (mask == True) decays; masked entries stay exactly as they are.
                p.addcmul_(p, mask, value=-rate)
        if not full:
            return
        if original_form:
            # p + (-rate) * p rounds differently from p * (1 - rate); keep the original's form for bit parity.
            torch._foreach_add_(full, full, alpha=-rate)
        else:
            torch._foreach_mul_(full, 1.0 - rate)
