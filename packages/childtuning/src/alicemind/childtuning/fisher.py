"""ChildTuning-D: the Fisher pass and the global top-p selection of the child network."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from alicemind.childtuning.masking import check_reserve_p
from alicemind.core.training import move_to_device, split_outputs

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], torch.Tensor]
ParamFilter = Callable[[str, nn.Parameter], bool]


def original_param_filter(name: str, param: nn.Parameter) -> bool:
    """The original's selection: parameters whose name contains 'layer' (case-sensitive).

    For BERT-like models this is every tensor of ``encoder.layer.N``; embeddings (``embeddings.LayerNorm`` has a
    capital L), pooler and classifier keep their full gradient.
    """
    return "layer" in name


def default_loss_fn(model: nn.Module, batch: Any) -> torch.Tensor:
    """``model(**batch)`` and its ``.loss`` (or ``["loss"]``), read as core's Trainer reads it."""
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"the default Fisher loss calls model(**batch) and needs dict batches, got {type(batch).__name__}; "
            "pass loss_fn=(model, batch) -> loss"
        )
    return split_outputs(model(**batch))[0]


@torch.no_grad()
def global_percentile_threshold(tensors: Iterable[torch.Tensor], q: float) -> float:
    """``numpy.percentile(concat(tensors), q)`` (linear interpolation) for non-negative float values.

    Exact and memory-sane: instead of concatenating (the original built one numpy array of every entry), the two
    order statistics around the virtual index are found by bisection on the float32 bit patterns, which are
    monotone for non-negative floats: at most 31 counting passes over the tensors, no copy of the whole set.
    The interpolation then mirrors numpy's float32 arithmetic, so ``F >= threshold`` selects the same entries.
    """
    flats = [t.detach().reshape(-1).float() for t in tensors]
    n = sum(t.numel() for t in flats)
    if n == 0:
        raise ValueError("cannot take a percentile of zero values")
    for t in flats:
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError("Fisher values must be finite and non-negative (is a gradient NaN or inf?)")
    virtual = (n - 1) * (q / 100.0)
    lo_idx = math.floor(virtual)
    gamma = virtual - lo_idx
    lo = _kth_smallest(flats, lo_idx + 1)
    if lo_idx + 1 >= n:
        hi = lo
    else:
        hi = _kth_smallest_above(flats, lo, lo_idx + 2)
    a = torch.tensor(lo, dtype=torch.float32)
    b = torch.tensor(hi, dtype=torch.float32)
    diff = b - a
    # numpy's _lerp: a + diff * t, or b - diff * (1 - t) when t >= 0.5, in the array's dtype (float32).
    value = b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma
    return float(value)


def _count_le(flats: list[torch.Tensor], bits: int) -> int:
    # One host sync per call, not one per tensor.
    counts = [(t.view(torch.int32) <= bits).sum().to(flats[0].device) for t in flats]
    return int(torch.stack(counts).sum())


def _kth_smallest(flats: list[torch.Tensor], k: int) -> float:
    """The k-th smallest (1-based) of non-negative float32 values, by bisection on their bit patterns."""
    lo, hi = 0, 0x7F800000  # +0.0 .. +inf
    while lo < hi:
        mid = (lo + hi) // 2
        if _count_le(flats, mid) >= k:
            hi = mid
        else:
            lo = mid + 1
    return torch.tensor(lo, dtype=torch.int32).view(torch.float32).item()


def _kth_smallest_above(flats: list[torch.Tensor], value: float, k: int) -> float:
    """The k-th smallest value, knowing the (k-1)-th is ``value``: ``value`` again on a tie, else the next one."""
    bits = torch.tensor(value, dtype=torch.float32).view(torch.int32).item()
    if _count_le(flats, bits) >= k:
        return value
    inf = torch.tensor(math.inf)
    nexts = [torch.where(t > value, t, inf.to(t.device)).amin().cpu() for t in flats]
    return float(torch.stack(nexts).min())


def fisher_information(
    model: nn.Module,
    dataloader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    param_filter: ParamFilter | None = None,
    max_grad_norm: float | None = 1.0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """The original's diagonal Fisher estimate {name: float32 tensor} (see ``compute_fisher_mask``)."""
    loss_fn = loss_fn or default_loss_fn
    param_filter = param_filter or original_param_filter
    selected = [(n, prm) for n, prm in model.named_parameters() if prm.requires_grad and param_filter(n, prm)]
    if not selected:
        raise ValueError("no trainable parameter matches the ChildTuning-D param_filter (default: 'layer' in name)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    try:
        num_batches: int | None = len(dataloader)  # type: ignore[arg-type]
    except TypeError:
        num_batches = None
    # Divide per batch when N is known, with the original's own expression ``F += grad ** 2 / N``
    # (ChildTuning/ChildTuningD.py, calculate_fisher): in float32 on CPU, g2 / N and g2 * (1 / N) round
    # differently, so the same torch ops are used to get the same bits. Without len(), divide at the end.
    divisor = num_batches if num_batches else 1
    fisher = {n: torch.zeros_like(prm, dtype=torch.float32) for n, prm in selected}
    was_training = model.training
    model.train()
    seen = 0
    try:
        for batch in dataloader:
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model, move_to_device(batch, device))
            loss.backward()
            with torch.no_grad():
                for n, prm in selected:
                    if prm.grad is None:
                        continue
                    if max_grad_norm is not None and max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(prm, max_grad_norm)
                    fisher[n] += prm.grad.float() ** 2 / divisor
            seen += 1
            if progress and (num_batches is None or seen % max(1, num_batches // 10) == 0):
                logger.info("ChildTuning-D Fisher pass: %d/%s batches", seen, num_batches or "?")
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if seen == 0:
        raise ValueError("the Fisher dataloader yielded no batch")
    if num_batches is None:
        for f in fisher.values():
            f.div_(seen)
    _average_over_ranks(fisher)
    return fisher


def _average_over_ranks(fisher: Mapping[str, torch.Tensor]) -> None:
    # Under torch.distributed each rank saw its own shard: averaging F gives every rank the same mask, which DDP
    # needs (different masks on the same all-reduced gradient would make the replicas drift apart).
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for f in fisher.values():
        dist.all_reduce(f, op=dist.ReduceOp.SUM)
        f.div_(dist.get_world_size())


def select_top_p(fisher: Mapping[str, torch.Tensor], reserve_p: float) -> dict[str, torch.Tensor]:
    """Masks keeping the entries at or above the global ``(1 - p) * 100`` percentile of all Fisher values."""
    p = check_reserve_p(reserve_p)
    threshold = global_percentile_threshold(fisher.values(), (1.0 - p) * 100.0)
    return {n: f >= threshold for n, f in fisher.items()}


def compute_fisher_mask(
    model: nn.Module,
    dataloader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    reserve_p: float,
    param_filter: ParamFilter | None = None,
    max_grad_norm: float | None = 1.0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """One pass over ``dataloader`` estimating the diagonal Fisher; keep the top ``reserve_p`` entries globally.

    As the original: train mode (dropout on); per batch, backward of the batch-mean loss, each selected tensor's
    gradient clipped on its own to L2 norm ``max_grad_norm`` (None or <= 0: no clip), then F += g^2 / N
    (N = number of batches). One global threshold, numpy's ``percentile(F, (1 - p) * 100)`` with linear
    interpolation (see ``global_percentile_threshold``), and mask = F >= threshold (ties may keep a little more
    than p). F is kept in float32 on the parameters' device (one float per selected entry). Under
    torch.distributed, F is averaged over the ranks (each seeing its shard), so every rank gets the same mask.

    Args:
        model: any module; its previous train/eval mode is restored and its gradients zeroed afterwards.
        dataloader: iterable of batches (moved to ``device``).
        loss_fn: (model, batch) -> scalar loss; default ``model(**batch).loss``.
        reserve_p: the fraction of selected entries to keep (the child network).
        param_filter: predicate(name, param) choosing the masked tensors; default ``'layer' in name``.
        max_grad_norm: per-tensor clip (the original used the Trainer's max_grad_norm, 1.0).
        device: where batches go; default the device of the model's first parameter.
        progress: log progress at INFO level.

    Returns:
        {parameter name: bool mask}, for the selected parameters only.
    """
    check_reserve_p(reserve_p)
    fisher = fisher_information(
        model,
        dataloader,
        loss_fn,
        param_filter=param_filter,
        max_grad_norm=max_grad_norm,
        device=device,
        progress=progress,
    )
    masks = select_top_p(fisher, reserve_p)
    if progress:
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        logger.info("ChildTuning-D: kept %d of %d entries (%.2f%%)", kept, total, 100.0 * kept / total)
    return masks
