"""Gradient masking shared by every ChildTuning entry point (optimizer wrapper, AdamW, callbacks).

ChildTuning-F multiplies each gradient by a fresh Bernoulli(p) keep-mask and rescales by 1/p, so the masked
gradient is an unbiased estimate of the full one. ChildTuning-D multiplies selected gradients by a fixed boolean
mask (from the Fisher pass) and does not rescale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import nn

Mode = Literal["F", "D"]
Sampler = Literal["original", "fast"]

#: F-mode mask samplers. "original" draws exactly as the original ChildTuningAdamW.step (ChildTuning/
#: ChildTuningOptimizer.py): ``torch.distributions.Bernoulli(grad.new_full(grad.size(), p)).sample()``, i.e.
#: ``torch.bernoulli`` over a tensor of probabilities, once per parameter with a gradient, even when p == 1, so a
#: given seed yields the original's masks. "fast" uses the scalar ``Tensor.bernoulli_(p)`` kernel (no probability
#: tensor, a different random stream: other masks for the same seed) and skips the draw when p == 1.
SAMPLERS: tuple[str, ...] = ("original", "fast")

_MODE_ALIASES = {"f": "F", "childtuning-f": "F", "d": "D", "childtuning-d": "D"}


def normalize_mode(mode: str) -> Mode:
    """Map 'F'/'D' (any case, or the original 'ChildTuning-F'/'ChildTuning-D') to 'F' or 'D'."""
    key = str(mode).strip().lower()
    if key not in _MODE_ALIASES:
        raise ValueError(f"ChildTuning mode must be 'F' or 'D' (or 'ChildTuning-F'/'ChildTuning-D'), got {mode!r}")
    return _MODE_ALIASES[key]  # type: ignore[return-value]


def check_reserve_p(reserve_p: float) -> float:
    """Validate the keep probability p (called ``reserve_p`` in the original code)."""
    p = float(reserve_p)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"reserve_p must be in (0, 1] (the fraction of gradient entries kept), got {reserve_p!r}")
    return p


def resolve_masks(
    masks: Mapping[nn.Parameter | str, torch.Tensor],
    model: nn.Module | None = None,
) -> dict[nn.Parameter, torch.Tensor]:
    """Turn a mask dict keyed by parameter objects or by parameter names into one keyed by parameter objects.

    Names are resolved once, here: an optimizer that looks masks up by tensor while the dict is keyed by name
    would silently never apply them (the pitfall of an unmerged upstream commit). Masks are moved to their
    parameter's device as bool tensors.
    """
    named = dict(model.named_parameters()) if model is not None else None
    resolved: dict[nn.Parameter, torch.Tensor] = {}
    for key, mask in masks.items():
        if isinstance(key, str):
            if named is None:
                raise ValueError(
                    f"mask keyed by name {key!r} needs the model to resolve it: pass model=... "
                    "(or key the masks by parameter objects)"
                )
            if key not in named:
                raise KeyError(f"mask name {key!r} is not a parameter of the model (e.g. {next(iter(named), None)!r})")
            param = named[key]
            label = key
        elif isinstance(key, torch.Tensor):
            param, label = key, f"tensor of shape {tuple(key.shape)}"
        else:
            raise TypeError(f"mask keys must be parameters or parameter names, got {type(key).__name__}")
        if tuple(mask.shape) != tuple(param.shape):
            raise ValueError(f"mask for {label} has shape {tuple(mask.shape)}, parameter has {tuple(param.shape)}")
        resolved[param] = mask.to(device=param.device, dtype=torch.bool)
    return resolved


class GradientMasker:
    """Applies the ChildTuning gradient mask in place to ``param.grad``.

    Args:
        mode: "F" (fresh Bernoulli mask each call, rescaled by 1/p) or "D" (fixed ``masks``, no rescale).
        reserve_p: probability of keeping a gradient entry in F mode; recorded for information in D mode.
        masks: D mode only: {parameter or name: bool mask}. Parameters without a mask keep their full gradient.
        model: needed when ``masks`` is keyed by names.
        generator: optional torch.Generator for the F-mode draws (on another device than the gradients, the
            mask is drawn there and moved).
        sampler: F mode: "original" (default; the original's ``torch.bernoulli`` stream, same seed -> same masks)
            or "fast" (``bernoulli_(p)``, another stream; no draw at p == 1). See ``SAMPLERS``.
    """

    def __init__(
        self,
        mode: str,
        reserve_p: float,
        masks: Mapping[nn.Parameter | str, torch.Tensor] | None = None,
        *,
        model: nn.Module | None = None,
        generator: torch.Generator | None = None,
        sampler: str = "original",
    ) -> None:
        self.mode: Mode = normalize_mode(mode)
        self.reserve_p = check_reserve_p(reserve_p)
        self.generator = generator
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.sampler = sampler
        self.masks: dict[nn.Parameter, torch.Tensor] | None = None
        if masks is not None:
            if self.mode == "F":
                raise ValueError("masks are only used by ChildTuning-D; mode 'F' draws a fresh mask every step")
            self.set_masks(masks, model=model)

    def set_masks(self, masks: Mapping[nn.Parameter | str, torch.Tensor], *, model: nn.Module | None = None) -> None:
        """Install (or replace) the fixed D-mode masks."""
        if self.mode != "D":
            raise ValueError("set_masks() is only valid in mode 'D'")
        self.masks = resolve_masks(masks, model)

    def keep_mask(self, param: torch.Tensor) -> torch.Tensor | None:
        """The boolean keep-mask D mode applies to ``param`` (None: not masked)."""
        return None if self.masks is None else self.masks.get(param)

    @torch.no_grad()
    def apply_(self, params: Iterable[torch.Tensor]) -> None:
        """Mask the gradients of ``params`` in place (F mode) or of the masked parameters (D mode)."""
        if self.mode == "D":
            if self.masks is None:
                raise RuntimeError(
                    "ChildTuning-D has no mask yet: compute it with compute_fisher_mask() and pass masks=... "
                    "(the callbacks compute it at train begin)"
                )
            for param, mask in self.masks.items():
                if param.grad is not None:
                    _check_dense(param.grad)
                    param.grad.mul_(mask)
            return
        p = self.reserve_p
        if p == 1.0 and self.sampler == "fast":
            return  # the original still draws (an all-ones mask) at p == 1, consuming the random stream
        for param in params:
            grad = param.grad
            if grad is None:
                continue
            _check_dense(grad)
            grad.mul_(self._bernoulli_like(grad).div_(p))

    def _bernoulli_like(self, grad: torch.Tensor) -> torch.Tensor:
        gen = self.generator
        # A generator on another device: draw there, then move (keeps a CPU generator usable for CUDA grads).
        device = grad.device if gen is None else gen.device
        if self.sampler == "original":
            # Bernoulli(probs).sample() is torch.bernoulli(probs) under no_grad: the same kernel and stream.
            probs = torch.full(grad.shape, self.reserve_p, dtype=grad.dtype, device=device)
            draw = torch.bernoulli(probs, generator=gen)
        else:
            draw = torch.empty(grad.shape, dtype=grad.dtype, device=device).bernoulli_(self.reserve_p, generator=gen)
        return draw if draw.device == grad.device else draw.to(grad.device)


def _check_dense(grad: torch.Tensor) -> None:
    if grad.is_sparse:
        raise RuntimeError("ChildTuning does not support sparse gradients (e.g. nn.Embedding(sparse=True))")
