"""``SparseLinear``: a frozen linear weight with a low-rank update and a low-rank + structured importance score.

Forward: ``W = W0 + beta U V``, ``S = |W| + alpha1 A B + alpha2 (R 1^T + 1 C^T)``, ``M`` zeroes the
``int(numel * s)`` smallest entries of ``S`` in this matrix, ``y = x (M * W)^T + b``. Backward is the
straight-through estimator of the original: the gradient reaching ``M`` passes unchanged to ``S``, so with
``G = dL/d(M*W)``: ``dS = G * W`` and ``dW = M * G + sign(W) * dS``.

Unlike the original (which argsorts every matrix in every forward, training and eval alike), the mask is cached
and recomputed only when the sparsity or a tensor the score depends on has changed (U, V, A, B, R, C compared with
a snapshot taken at the last recomputation; W0 by its version counter).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.pst.config import PSTConfig

#: Names of the trainable tensors, as in the original's state dicts.
PST_PARAMETERS = ("weight_U", "weight_V", "mask_scores_A", "mask_scores_B", "mask_scores_R", "mask_scores_C")


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A 0/1 mask (dtype of ``scores``) that zeroes exactly ``int(numel * sparsity)`` smallest entries.

    One ``kthvalue`` selection (linear time) instead of a full sort; ties at the threshold are broken by position
    so that the kept count is exact.
    """
    flat = scores.detach().reshape(-1)
    n = flat.numel()
    prune = int(n * sparsity)
    if prune <= 0:
        return torch.ones_like(scores)
    if prune >= n:
        return torch.zeros_like(scores)
    threshold = flat.kthvalue(prune).values
    keep = flat > threshold
    missing = (n - prune) - int(keep.sum())
    if missing > 0:  # entries equal to the threshold: keep as many as the count needs
        tied = (flat == threshold).nonzero().squeeze(1)
        keep[tied[tied.numel() - missing :]] = True
    return keep.to(scores.dtype).reshape(scores.shape)


class _PSTLinear(torch.autograd.Function):
    """y = x (M * (W0 + beta U V))^T + b with the straight-through gradients of the importance score."""

    @staticmethod
    def forward(ctx: Any, x, weight, bias, u, v, a, b, r, c, mask, beta, alpha1, alpha2):  # noqa: ARG004
        effective = torch.addmm(weight, u, v, alpha=beta)
        masked = effective * mask
        ctx.save_for_backward(x, weight, u, v, a, b, mask)
        ctx.scales = (beta, alpha1, alpha2)
        ctx.has_bias = bias is not None
        out = F.linear(x, masked.to(x.dtype), None if bias is None else bias.to(x.dtype))
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):
        x, weight, u, v, a, b, mask = ctx.saved_tensors
        beta, alpha1, alpha2 = ctx.scales
        needs = ctx.needs_input_grad
        effective = torch.addmm(weight, u, v, alpha=beta)
        dtype = effective.dtype
        dy = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = grad_out.matmul((effective * mask).to(grad_out.dtype)) if needs[0] else None
        g = dy.to(dtype).t().matmul(x.reshape(-1, x.shape[-1]).to(dtype))  # dL/d(M * W)
        d_scores = g * effective  # straight-through: dL/dM passes to S unchanged
        d_weight = g * mask + torch.sign(effective) * d_scores  # both paths: M * W and |W| inside S
        grad_bias = dy.sum(0).to(dtype) if ctx.has_bias and needs[2] else None
        grads = (
            grad_x,
            d_weight if needs[1] else None,
            grad_bias,
            beta * d_weight.matmul(v.t()) if needs[3] else None,
            beta * u.t().matmul(d_weight) if needs[4] else None,
            alpha1 * d_scores.matmul(b.t()) if needs[5] else None,
            alpha1 * a.t().matmul(d_scores) if needs[6] else None,
            alpha2 * d_scores.sum(1) if needs[7] else None,
            alpha2 * d_scores.sum(0) if needs[8] else None,
        )
        return (*grads, None, None, None, None)


class SparseLinear(nn.Module):
    """PST replacement of an ``nn.Linear`` (or a Hugging Face ``Conv1D``, stored here in Linear layout).

    ``weight`` (W0) and ``bias`` are frozen; ``weight_U``, ``weight_V``, ``mask_scores_{A,B,R,C}`` train.
    ``sparsity`` is the current fraction pruned in this matrix; set it (or use :func:`alicemind.pst.set_sparsity`
    / the schedule callbacks) as training proceeds. ``mask_updates`` counts mask recomputations.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: PSTConfig | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        cfg = config or PSTConfig()
        for name, rank in (("weight_rank", cfg.weight_rank), ("mask_rank", cfg.mask_rank)):
            if rank > min(in_features, out_features):
                raise ValueError(
                    f"SparseLinear: {name}={rank} exceeds the matrix ({out_features} x {in_features}); "
                    f"use a rank <= {min(in_features, out_features)}"
                )
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = in_features, out_features
        self.weight_beta, self.mask_alpha1, self.mask_alpha2 = cfg.weight_beta, cfg.mask_alpha1, cfg.mask_alpha2
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features, **factory), requires_grad=False) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's init; from_module overwrites it
        self.weight_U = nn.Parameter(torch.randn(out_features, cfg.weight_rank, **factory))
        self.weight_V = nn.Parameter(torch.zeros(cfg.weight_rank, in_features, **factory))
        self.mask_scores_A = nn.Parameter(torch.randn(out_features, cfg.mask_rank, **factory))
        self.mask_scores_B = nn.Parameter(torch.zeros(cfg.mask_rank, in_features, **factory))
        self.mask_scores_R = nn.Parameter(torch.zeros(out_features, **factory))
        self.mask_scores_C = nn.Parameter(torch.zeros(in_features, **factory))
        self.sparsity = 0.0
        self.mask_updates = 0
        self.source_layout = "linear"  # or "conv1d": merge_pst rebuilds the original module type
        self.source_class: type[nn.Module] = nn.Linear
        self._mask: torch.Tensor | None = None
        self._mask_key: tuple | None = None
        self._snapshot: tuple[torch.Tensor, ...] | None = None
        self._mask_serial = 0  # bumped with every new mask; keys the eval-time weight cache
        self._frozen_weight: torch.Tensor | None = None  # masked effective weight, reused when no grad is needed
        self._frozen_serial = -1

    @classmethod
    def from_module(cls, module: nn.Module, config: PSTConfig | None = None) -> SparseLinear:
        """Wrap an ``nn.Linear`` or a ``Conv1D`` (weight ``[in, out]``), copying W0 and the bias."""
        from alicemind.pst.convert import is_conv1d

        conv = is_conv1d(module)
        weight = module.weight.detach()
        out_f, in_f = (weight.shape[1], weight.shape[0]) if conv else weight.shape
        has_bias = getattr(module, "bias", None) is not None
        layer = cls(in_f, out_f, has_bias, config, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight.t() if conv else weight)
            if has_bias:
                layer.bias.copy_(module.bias.detach())
        layer.source_layout = "conv1d" if conv else "linear"
        layer.source_class = type(module)
        return layer

    # ------------------------------------------------------------------------------------------------ scores
    def effective_weight(self) -> torch.Tensor:
        """``W0 + beta U V`` (with autograd)."""
        return torch.addmm(self.weight, self.weight_U, self.weight_V, alpha=self.weight_beta)

    def importance_scores(self) -> torch.Tensor:
        """``S = |W| + alpha1 A B + alpha2 (R 1^T + 1 C^T)`` (with autograd)."""
        structured = self.mask_scores_R.unsqueeze(1) + self.mask_scores_C.unsqueeze(0)
        low_rank = torch.addmm(structured * self.mask_alpha2, self.mask_scores_A, self.mask_scores_B,
                               alpha=self.mask_alpha1)  # fmt: skip
        return self.effective_weight().abs() + low_rank

    def _score_tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.weight_U, self.weight_V, self.mask_scores_A, self.mask_scores_B, self.mask_scores_R,
                self.mask_scores_C)  # fmt: skip

    def _state_key(self) -> tuple:
        tensors = (self.weight, *self._score_tensors())
        return (float(self.sparsity), self.weight._version, *(t.data_ptr() for t in tensors))

    def _scores_changed(self) -> bool:
        # Version counters are not enough: torch's fused AdamW updates parameters without bumping them. The PST
        # tensors are small (about 3% of the weight), so comparing them with a snapshot is cheap and exact.
        if self._snapshot is None:
            return True
        return not all(torch.equal(t, s) for t, s in zip(self._score_tensors(), self._snapshot))

    def mask(self) -> torch.Tensor:
        """The current 0/1 mask, recomputed only if the sparsity or the scores changed since the last call."""
        key = self._state_key()
        if self._mask is None or key != self._mask_key or self._scores_changed():
            with torch.no_grad():
                self._mask = topk_mask(self.importance_scores(), self.sparsity)
                self._snapshot = tuple(t.detach().clone() for t in self._score_tensors())
            self._mask_key = key
            self._mask_serial += 1
            self.mask_updates += 1
        return self._mask

    def invalidate_mask(self) -> None:
        """Force a recomputation at the next forward (after writing tensors through ``.data``, which no version
        counter sees)."""
        self._mask = self._mask_key = self._snapshot = self._frozen_weight = None

    def masked_weight(self) -> torch.Tensor:
        """``M * W`` without autograd: the weight a merged model carries."""
        with torch.no_grad():
            return self.effective_weight() * self.mask()

    # ------------------------------------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask()
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if not trains:  # eval / generation: reuse M * W as long as nothing it depends on changed
            if self._frozen_weight is None or self._frozen_serial != self._mask_serial:
                self._frozen_weight = (self.effective_weight() * mask).detach()
                self._frozen_serial = self._mask_serial
            bias = None if self.bias is None else self.bias.to(x.dtype)
            return F.linear(x, self._frozen_weight.to(x.dtype), bias)
        self._frozen_weight = None  # training invalidates it anyway; free the memory
        return _PSTLinear.apply(
            x, self.weight, self.bias, self.weight_U, self.weight_V, self.mask_scores_A, self.mask_scores_B,
            self.mask_scores_R, self.mask_scores_C, mask, self.weight_beta, self.mask_alpha1, self.mask_alpha2,
        )  # fmt: skip

    def num_pst_parameters(self) -> int:
        """Trainable PST tensors of this layer: ``(r_w + r_m)(d_out + d_in) + d_out + d_in``."""
        return sum(getattr(self, name).numel() for name in PST_PARAMETERS)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"weight_rank={self.weight_U.shape[1]}, mask_rank={self.mask_scores_A.shape[1]}, "
            f"sparsity={self.sparsity:.3f}, source={self.source_layout}"
        )
