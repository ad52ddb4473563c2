"""LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning") with ``torch._foreach_*`` kernels.

Fills the role of apex's FusedLAMB: one multi-tensor kernel launch per operation and device instead of a Python
loop of small kernels per parameter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive Adam: an AdamW-style update rescaled per tensor by ``||w|| / ||update||``.

    ``update = m_hat / (sqrt(v_hat) + eps) + weight_decay * w`` and ``w -= lr * trust * update`` where
    ``trust = ||w|| / ||update||`` (1 when either norm is 0, optionally clipped to ``max_trust_ratio``).
    Groups with ``weight_decay=0`` (biases, norms) still get the trust ratio unless ``always_adapt=False``,
    which mirrors NVIDIA's implementation that adapts only decayed tensors.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        *,
        bias_correction: bool = True,
        always_adapt: bool = True,
        max_trust_ratio: float | None = None,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Lamb: lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Lamb: betas must lie in [0, 1), got {betas}")
        if eps < 0.0 or weight_decay < 0.0:
            raise ValueError(f"Lamb: eps and weight_decay must be >= 0, got eps={eps}, weight_decay={weight_decay}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            always_adapt=always_adapt,
            max_trust_ratio=max_trust_ratio,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Perform one LAMB update over every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Tensors of one foreach call must share device and dtype.
            buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                buckets[(p.device, p.dtype)].append(p)
            for params in buckets.values():
                self._update(group, params)
        return loss

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]

        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)

        if group["bias_correction"]:
            steps = [self.state[p]["step"] for p in params]
            update = torch._foreach_div(exp_avgs, [1.0 - beta1**s for s in steps])
            denom = torch._foreach_div(exp_avg_sqs, [1.0 - beta2**s for s in steps])
        else:
            update = torch._foreach_mul(exp_avgs, 1.0)
            denom = torch._foreach_mul(exp_avg_sqs, 1.0)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_div_(update, denom)
        if group["weight_decay"] != 0.0:
            torch._foreach_add_(update, params, alpha=group["weight_decay"])

        if group["always_adapt"] or group["weight_decay"] != 0.0:
            w_norm = torch.stack(torch._foreach_norm(params))
            u_norm = torch.stack(torch._foreach_norm(update))
            trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
            if group["max_trust_ratio"] is not None:
                trust = trust.clamp(max=group["max_trust_ratio"])
            # One scale per tensor; the 0-dim tensors broadcast inside the foreach kernel, so no host sync.
            torch._foreach_mul_(update, list((trust * -group["lr"]).to(params[0].dtype).unbind()))
            torch._foreach_add_(params, update)
        else:
            torch._foreach_add_(params, update, alpha=-group["lr"])
