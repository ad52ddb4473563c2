"""ChildTuningOptimizer: wrap any torch optimizer so its step sees ChildTuning-masked gradients."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from alicemind.childtuning.masking import GradientMasker


class ChildTuningOptimizer(torch.optim.Optimizer):
    """Mask gradients in place right before the wrapped optimizer's ``step()``.

    Works with any ``torch.optim.Optimizer`` (AdamW, SGD, Adafactor, ...). ``param_groups``, ``state``,
    ``defaults``, ``state_dict``, ``load_state_dict``, ``zero_grad`` and ``add_param_group`` are the wrapped
    optimizer's own, so LR schedulers (``LambdaLR(wrapper, ...)``) and checkpointing work unchanged.

    Args:
        optimizer: the optimizer to wrap.
        mode: "F" (fresh Bernoulli(reserve_p) mask each step, gradient rescaled by 1/reserve_p) or
            "D" (fixed ``masks``, no rescaling; parameters absent from ``masks`` get their full gradient).
        reserve_p: probability of keeping a gradient entry (F); the target child fraction (D, informational).
        masks: D mode: {parameter or parameter name: bool mask} (names need ``model``); names are resolved to
            parameter objects once, here. Every masked parameter must belong to the wrapped optimizer.
        model: resolves name-keyed masks.
        generator: optional torch.Generator for the F-mode draws (reproducible masks).
        sampler: F-mode mask sampler, "original" (default: the original's random stream, same seed -> same
            masks) or "fast" (see ``alicemind.childtuning.masking.SAMPLERS``).

    Note: with Adam-type optimizers, entries masked at step t still move through the first moment from earlier
    steps (F mode); in D mode the mask is fixed from the first step, so masked entries keep zero moments and only
    weight decay (if any) touches them.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        mode: str,
        reserve_p: float,
        masks: Mapping[nn.Parameter | str, torch.Tensor] | None = None,
        model: nn.Module | None = None,
        generator: torch.Generator | None = None,
        sampler: str = "original",
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"ChildTuningOptimizer wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        # Optimizer.__init__ is deliberately not called: groups and state belong to the wrapped optimizer.
        self.optimizer = optimizer
        self.masker = GradientMasker(mode, reserve_p, generator=generator, sampler=sampler)
        self._optimizer_step_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._patch_step_function()
        if masks is not None:
            self.set_masks(masks, model=model)

    # -- delegation -------------------------------------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    @property
    def mode(self) -> str:
        return self.masker.mode

    @property
    def reserve_p(self) -> float:
        return self.masker.reserve_p

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The wrapped optimizer's state dict (masks are not optimizer state; D masks are rebuilt or saved apart)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        self.optimizer.load_state_dict(state_dict)

    def zero_grad(self, set_to_none: bool = True) -> None:  # type: ignore[override]
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:  # type: ignore[override]
        self.optimizer.add_param_group(param_group)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._patch_step_function()

    def __repr__(self) -> str:
        return f"ChildTuningOptimizer(mode={self.mode!r}, reserve_p={self.reserve_p}, optimizer={self.optimizer!r})"

    # -- ChildTuning ------------------------------------------------------------------------------------------
    def set_masks(self, masks: Mapping[nn.Parameter | str, torch.Tensor], *, model: nn.Module | None = None) -> None:
        """Install the D-mode masks (e.g. the output of ``compute_fisher_mask``)."""
        self.masker.set_masks(masks, model=model)
        managed = {id(p) for group in self.param_groups for p in group["params"]}
        missing = [tuple(p.shape) for p in self.masker.masks or {} if id(p) not in managed]
        if missing:
            raise ValueError(
                f"{len(missing)} masked parameter(s) are not optimized by the wrapped optimizer "
                f"(shapes {missing[:3]}...): their mask would never apply"
            )

    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """Evaluate ``closure`` (if any), mask the gradients, then step the wrapped optimizer.

        A closure is evaluated once, here; optimizers that re-evaluate it inside ``step`` (LBFGS) would see
        unmasked gradients on re-evaluation and are not supported.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.masker.apply_(p for group in self.param_groups for p in group["params"])
        self.optimizer.step()
        return loss
