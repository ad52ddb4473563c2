"""The original optimizer as a named option: BertAdam as StructVBERT's ``lxrt/optimization.py`` runs it.

Its arithmetic differs from AdamW (errata 6): no bias correction of either moment, epsilon added to the root of
the raw second moment, and weight decay 0.01 on every parameter (biases and LayerNorms too: one group). Its own
gradient clipping is commented out in the original; the loop clips the global norm to 5.0 instead (the recipes'
``max_grad_norm: 5.0``). The learning-rate schedule comes from core's scheduler (linear warm-up over 10%, then
linear decay to 0, evaluated at the step count before the update, as ``warmup_linear(step / t_total)`` is).
"""

from __future__ import annotations

import torch


class BertAdam(torch.optim.Optimizer):
    """``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``; ``p -= lr * (m / (sqrt(v) + e) + wd * p)``."""

    def __init__(self, params, lr: float = 5e-5, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01):  # fmt: skip
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"BertAdam: invalid lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("BertAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["next_m"] = torch.zeros_like(p)
                    state["next_v"] = torch.zeros_like(p)
                m, v = state["next_m"], state["next_v"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"] > 0:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
                state["step"] += 1
        return loss


def build_original_optimizer(model: torch.nn.Module, *, lr: float, eps: float = 1e-6, weight_decay: float = 0.01,
                             betas: tuple[float, float] = (0.9, 0.999)) -> BertAdam:  # fmt: skip
    """BertAdam over all trainable parameters in one group, as ``tasks/vqa.py`` builds it."""
    seen, params = set(), []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return BertAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
