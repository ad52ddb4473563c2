"""Choose modules of any model, wrap them in ``SparseLinear``, count what trains, and set the sparsity."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from torch import nn

from alicemind.pst.config import PSTConfig
from alicemind.pst.layer import PST_PARAMETERS, SparseLinear

Pattern = str | type
Patterns = Pattern | Iterable[Pattern] | None


def is_conv1d(module: nn.Module) -> bool:
    """A Hugging Face ``Conv1D`` (GPT-2 style: ``y = x W + b`` with W ``[in, out]``), found by duck typing so that
    transformers stays optional."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(weight, nn.Parameter)
        and weight.ndim == 2
        and getattr(module, "nf", weight.shape[1]) == weight.shape[1]
    )


def is_linear_like(module: nn.Module) -> bool:
    """Whether PST can wrap ``module``: an ``nn.Linear`` (or subclass) or a ``Conv1D``."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def _as_list(patterns: Patterns) -> list[Pattern]:
    if patterns is None:
        return []
    if isinstance(patterns, str | type):
        return [patterns]
    return list(patterns)


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _matches(pattern: Pattern, name: str, module: nn.Module) -> bool:
    if isinstance(pattern, type):
        return isinstance(module, pattern)
    # Exact name, a dotted suffix ("query" matches "encoder.layer.0.attention.self.query") or a glob on the full name.
    return name == pattern or name.endswith(f".{pattern}") or fnmatch.fnmatchcase(name, pattern)


def _match_under(pattern: Pattern, name: str, modules: dict[str, nn.Module]) -> bool:
    # A pattern naming a container (e.g. "bert.encoder") selects every linear beneath it, as the original did
    # when it converted model.bert.encoder.
    return any(_matches(pattern, prefix, modules[prefix]) for prefix in _prefixes(name) if prefix in modules)


def _listing(names: list[str], limit: int = 40) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "") if names else "none"


def select_modules(model: nn.Module, target_modules: Patterns = None, exclude_modules: Patterns = None) -> list[str]:
    """Names of the linear / Conv1D modules chosen by ``target_modules`` minus ``exclude_modules``.

    A pattern is a module class (``nn.Linear``, ``BertSelfAttention``), an exact name, a dotted name suffix
    (``"query"``) or a glob on the full name (``"*.attention.*"``); a pattern that names a container selects every
    linear beneath it. ``None`` selects every linear and Conv1D. A pattern that selects nothing is an error that
    lists the module names.
    """
    modules = dict(model.named_modules())
    candidates = [n for n, m in modules.items() if n and is_linear_like(m)]
    targets, excludes = _as_list(target_modules), _as_list(exclude_modules)
    if not candidates:
        raise ValueError(f"{type(model).__name__} has no nn.Linear or Conv1D module to convert")
    if not targets:
        chosen = list(candidates)
    else:
        unmatched = [p for p in targets if not any(_match_under(p, n, modules) for n in candidates)]
        if unmatched:
            shown = ", ".join(p.__name__ if isinstance(p, type) else repr(p) for p in unmatched)
            raise ValueError(
                f"target_modules {shown} matched no linear or Conv1D module of {type(model).__name__}; "
                f"its linear modules are: {_listing(candidates)}"
            )
        chosen = [n for n in candidates if any(_match_under(p, n, modules) for p in targets)]
    chosen = [n for n in chosen if not any(_match_under(p, n, modules) for p in excludes)]
    if not chosen:
        raise ValueError(f"exclude_modules removed every target; linear modules: {_listing(candidates)}")
    return chosen


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def convert_to_pst(
    model: nn.Module,
    target_modules: Patterns = None,
    config: PSTConfig | None = None,
    *,
    exclude_modules: Patterns = None,
    trainable_modules: Patterns = None,
    freeze: bool = True,
) -> nn.Module:
    """Replace the chosen linears (and ``Conv1D``) of ``model`` in place with :class:`SparseLinear`; returns it.

    With ``freeze`` (default) every other parameter stops training except those of ``trainable_modules`` (the same
    pattern syntax, e.g. ``["classifier"]`` for a fresh head), so only U, V, A, B, R, C (and those heads) train.
    """
    cfg = config or PSTConfig()
    names = select_modules(model, target_modules, exclude_modules)
    for name in names:
        try:
            layer = SparseLinear.from_module(model.get_submodule(name), cfg)
        except ValueError as err:
            raise ValueError(f"cannot convert {name}: {err}") from None
        _set_submodule(model, name, layer)
    if freeze:
        modules = dict(model.named_modules())
        heads = _as_list(trainable_modules)
        unmatched = [p for p in heads if not any(_matches(p, n, m) for n, m in modules.items() if n)]
        if unmatched:
            raise ValueError(
                f"trainable_modules {unmatched} matched no module; modules: {_listing([n for n in modules if n])}"
            )
        for module_name, module in modules.items():
            is_head = bool(heads) and _match_under_any(heads, module_name, modules)
            for pname, param in module.named_parameters(recurse=False):
                param.requires_grad_(is_head or (isinstance(module, SparseLinear) and pname in PST_PARAMETERS))
    return model


def _match_under_any(patterns: list[Pattern], name: str, modules: dict[str, nn.Module]) -> bool:
    return bool(name) and any(_match_under(p, name, modules) for p in patterns)


def sparse_layers(model: nn.Module) -> Iterator[tuple[str, SparseLinear]]:
    """``(name, layer)`` for every SparseLinear in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, SparseLinear):
            yield name, module


def set_sparsity(model: nn.Module, sparsity: float) -> int:
    """Set the current sparsity of every SparseLinear (masks follow lazily); returns how many layers were set."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    count = 0
    for _, layer in sparse_layers(model):
        layer.sparsity = float(sparsity)
        count += 1
    return count


@dataclass(frozen=True)
class ParameterCount:
    """What trains: ``trainable`` of ``total`` parameters; ``pst`` of them are PST tensors; ``sparse_weights`` is
    the number of frozen weights under a mask."""

    trainable: int
    total: int
    pst: int
    sparse_weights: int

    @property
    def fraction(self) -> float:
        """Trainable share of all parameters."""
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (
            f"trainable {self.trainable:,} of {self.total:,} parameters ({100 * self.fraction:.2f}%); "
            f"PST tensors {self.pst:,} over {self.sparse_weights:,} masked weights"
        )


def trainable_parameters(model: nn.Module) -> ParameterCount:
    """Count trainable, total and PST parameters (shared tensors once) of ``model``."""
    seen: dict[int, bool] = {}
    total = trainable = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen[id(param)] = True
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    layers = [layer for _, layer in sparse_layers(model)]
    pst = sum(layer.num_pst_parameters() for layer in layers)
    return ParameterCount(trainable, total, pst, sum(layer.weight.numel() for layer in layers))
