"""CAP-m (movement pruning, top-K), CAP-soft (sigmoid threshold + L1) and magnitude pruning (§3.4).

Each adapted layer's six matrices (Q, K, V, attention output, FFN in, FFN out) become :class:`MaskedLinear`:
``y = x (M * W)^T + b`` with a learned score S per weight (init ``mask_init``) and a straight-through binary M.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.cap.adapters import EncoderAdapter, find_adapter
from alicemind.cap.config import check_sparsity

PRUNING_METHODS = ("topk", "sigmoied_threshold", "magnitude")


def cubic_threshold(
    step: int, *, initial: float, final: float, warmup_steps: int, total_steps: int, initial_warmup: float = 2.0,
    final_warmup: float = 3.0,
) -> float:  # fmt: skip
    """The original's schedule: ``initial`` until ``initial_warmup * warmup_steps``, ``final`` for the last
    ``final_warmup * warmup_steps`` steps, and a cubic in between."""
    start = initial_warmup * warmup_steps
    end = total_steps - final_warmup * warmup_steps
    if step <= start:
        return initial
    if step > end:
        return final
    progress = (step - start) / (total_steps - (initial_warmup + final_warmup) * warmup_steps)
    return final + (initial - final) * (1 - progress) ** 3


def topk_mask(scores: torch.Tensor, keep: float) -> torch.Tensor:
    """Binary mask keeping exactly the ``int(keep * numel)`` highest scores (ties: lowest flat index first).

    A k-th value selection, not a full sort: the strictly larger scores, then as many tied ones as needed.
    """
    flat = scores.detach().flatten()
    n, count = flat.numel(), int(keep * flat.numel())
    if count >= n:
        return torch.ones_like(scores)
    if count <= 0:
        return torch.zeros_like(scores)
    kth = flat.kthvalue(n - count + 1).values  # the count-th largest
    mask = flat > kth
    need = count - int(mask.sum())
    if need > 0:
        ties = (flat == kth).nonzero().flatten()[:need]
        mask[ties] = True
    return mask.to(scores.dtype).view_as(scores)


def sigmoid_threshold_mask(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """``sigmoid(S) > threshold``; if fewer than ``int(0.005 * numel) + 1`` survive, the top scores instead."""
    s = scores.detach()
    mask = (torch.sigmoid(s) > threshold).to(s.dtype)
    floor = int(0.005 * s.numel()) + 1
    if int(mask.sum()) < floor:
        kth = s.flatten().kthvalue(max(s.numel() - floor, 1)).values
        mask = (s > kth).to(s.dtype)
    return mask


class _StraightThrough(torch.autograd.Function):
    """Forward: the binary mask exactly; backward: the mask's gradient passed to the scores unchanged."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class MaskedLinear(nn.Linear):
    """A Linear whose weight is multiplied by a binary mask (set by its :class:`MovementPruner` before forward)."""

    def __init__(self, linear: nn.Linear, method: str, mask_init: float = 0.0) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.weight = linear.weight
        self.bias = linear.bias
        self.method = method
        if method != "magnitude":
            self.mask_scores = nn.Parameter(torch.full_like(linear.weight, mask_init))
        self.hard_mask: torch.Tensor | None = None  # set by the pruner; for the global scope, computed jointly
        self.threshold = 1.0
        self._cache: tuple[tuple, torch.Tensor] | None = None  # the mask changes only when scores or threshold do

    def scores(self) -> torch.Tensor:
        return self.weight.abs() if self.method == "magnitude" else self.mask_scores

    def compute_mask(self) -> torch.Tensor:
        """The binary mask in forward, with a straight-through gradient to the scores (dL/dS = dL/dM)."""
        scores = self.scores()
        if self.hard_mask is not None:
            hard = self.hard_mask
        else:
            source = self.weight if self.method == "magnitude" else self.mask_scores
            key = (source._version, self.threshold, source.data_ptr())
            if self._cache is not None and self._cache[0] == key:
                hard = self._cache[1]
            else:
                if self.method == "sigmoied_threshold":
                    hard = sigmoid_threshold_mask(scores, self.threshold)
                else:
                    hard = topk_mask(scores, self.threshold)
                self._cache = (key, hard)
        if self.method == "magnitude":
            return hard
        return _StraightThrough.apply(scores, hard)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.compute_mask(), self.bias)

    def to_linear(self) -> nn.Linear:
        """A plain Linear holding the masked weights."""
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        plain = plain.to(self.weight.device, self.weight.dtype)
        with torch.no_grad():
            plain.weight.copy_(self.weight * self.compute_mask().detach())
            if self.bias is not None:
                plain.bias.copy_(self.bias)
        return plain


def _replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for module in root.modules():
        for name, child in module.named_children():
            if child is old:
                setattr(module, name, new)


class MovementPruner:
    """Replace the adapted matrices with MaskedLinear and drive their threshold with the cubic schedule.

    ``method``: "topk" (CAP-m; ``final_sparsity`` of each matrix, or of all of them with ``scope="global"``),
    "sigmoied_threshold" (CAP-soft; the threshold goes ``soft_initial_threshold -> soft_final_threshold`` and
    :meth:`regularization` is the L1 term) or "magnitude" (|W| top-K, the baseline). Call :meth:`set_step` before
    each training step (the callbacks do).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        method: str = "topk",
        scope: str = "local",
        final_sparsity: float = 0.9,
        initial_sparsity: float = 0.0,
        total_steps: int,
        warmup_steps: int = 0,
        initial_warmup: float = 2.0,
        final_warmup: float = 3.0,
        soft_initial_threshold: float = 0.0,
        soft_final_threshold: float = 0.1,
        final_lambda: float = 0.0,
        mask_init: float = 0.0,
        adapter: EncoderAdapter | None = None,
    ) -> None:
        if method not in PRUNING_METHODS:
            raise ValueError(f"pruning method must be one of {', '.join(PRUNING_METHODS)}, got {method!r}")
        if scope not in ("local", "global"):
            raise ValueError(f"scope must be 'local' (per matrix) or 'global', got {scope!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.method, self.scope = method, scope
        self.final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
        self.initial_sparsity = check_sparsity(initial_sparsity, "initial_sparsity")
        if method == "sigmoied_threshold":
            self.initial, self.final = soft_initial_threshold, soft_final_threshold
        else:
            self.initial, self.final = 1.0 - self.initial_sparsity, 1.0 - self.final_sparsity
        self.schedule = dict(
            warmup_steps=warmup_steps, total_steps=total_steps, initial_warmup=initial_warmup, final_warmup=final_warmup
        )
        self.final_lambda = final_lambda
        self.model = model
        self.adapter = find_adapter(model, adapter)
        self.masked: dict[str, MaskedLinear] = {}
        names = {id(m): n for n, m in model.named_modules()}
        for handles in self.adapter.layers(model):
            for linear in handles.linears().values():
                if isinstance(linear, MaskedLinear):
                    raise ValueError("this model already has MaskedLinear layers")
                masked = MaskedLinear(linear, method, mask_init)
                _replace_module(model, linear, masked)
                self.masked[names[id(linear)]] = masked
        self.step = 0
        self.set_step(0)

    def threshold_at(self, step: int) -> float:
        return cubic_threshold(step, initial=self.initial, final=self.final, **self.schedule)

    @property
    def threshold(self) -> float:
        return self.threshold_at(self.step)

    def set_step(self, step: int) -> None:
        """Set every layer's threshold for ``step`` (the global top-K masks are recomputed here)."""
        self.step = step
        value = self.threshold
        for layer in self.masked.values():
            layer.threshold = value
            layer.hard_mask = None
            # Fused AdamW updates parameters without bumping their version counter, so the per-layer cache cannot
            # see that the scores moved: a new step always recomputes the mask.
            layer._cache = None
        if self.scope == "global" and self.method != "sigmoied_threshold":
            self._global_masks(value)

    def refresh(self) -> None:
        """Recompute global masks after the scores changed (call after each optimizer step)."""
        if self.scope == "global" and self.method != "sigmoied_threshold":
            self._global_masks(self.threshold)

    def _global_masks(self, keep: float) -> None:
        layers = list(self.masked.values())
        flat = torch.cat([layer.scores().detach().flatten() for layer in layers])
        mask = topk_mask(flat, keep)
        start = 0
        for layer in layers:
            n = layer.weight.numel()
            layer.hard_mask = mask[start : start + n].view_as(layer.weight)
            start += n

    def regularization(self) -> torch.Tensor:
        """CAP-soft's ``lambda_t * mean over layers(sum sigmoid(S) / numel)``; 0 for the other methods."""
        if self.method != "sigmoied_threshold" or not self.final_lambda:
            return torch.zeros((), device=next(iter(self.masked.values())).weight.device)
        lam = self.final_lambda * self.threshold / self.final
        terms = [torch.sigmoid(layer.mask_scores).sum() / layer.mask_scores.numel() for layer in self.masked.values()]
        return lam * torch.stack(terms).mean()

    def score_parameters(self) -> list[nn.Parameter]:
        return [layer.mask_scores for layer in self.masked.values() if hasattr(layer, "mask_scores")]

    def param_groups(self, lr: float, mask_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """The original's three AdamW groups for ``alicemind.core.ops.build_optimizer(groups, lr=lr)``: scores
        (``mask_lr`` as an ``lr_scale``, no decay), weights (``weight_decay``), biases and LayerNorm (no decay)."""
        scores = {id(p) for p in self.score_parameters()}
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if id(param) in scores or not param.requires_grad:
                continue
            (no_decay if "bias" in name or "norm" in name.lower() else decay).append(param)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if scores:
            groups.insert(0, {"params": self.score_parameters(), "weight_decay": 0.0, "lr_scale": mask_lr / lr})
        return [g for g in groups if g["params"]]

    @torch.no_grad()
    def masks(self) -> dict[str, torch.Tensor]:
        """The current binary mask of every masked matrix, by module name."""
        return {name: layer.compute_mask().detach().clone() for name, layer in self.masked.items()}

    def sparsity_report(self) -> dict[str, Any]:
        """Per-matrix and overall fraction of zeroed weights (encoder matrices only)."""
        per_layer, zeros, total = {}, 0, 0
        for name, mask in self.masks().items():
            z = int((mask == 0).sum())
            per_layer[name] = z / mask.numel()
            zeros, total = zeros + z, total + mask.numel()
        return {"overall": zeros / total, "pruned_weights": zeros, "masked_weights": total, "per_matrix": per_layer}

    def restore(self) -> dict[str, Any]:
        """Bake the masks into plain Linear layers (original names and keys); returns the sparsity report."""
        report = self.sparsity_report()
        for layer in list(self.masked.values()):
            _replace_module(self.model, layer, layer.to_linear())
        self.masked = {}
        return report
