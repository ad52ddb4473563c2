"""Merging Megatron / DeepSpeed model-parallel shards into one state dict."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint.errors import CheckpointError, format_keys
from alicemind.core.checkpoint.torch_files import load_checkpoint_object

__all__ = ["SplitRule", "merge_model_parallel_shards", "load_deepspeed_mp_shards"]

# A rule value: the concatenation dim (0 = column-parallel, 1 or -1 = row-parallel), None = replicated, or
# (dim, stride) for fused column-parallel weights laid out per rank as [q_r; k_r; v_r] (stride 3) or [k_r; v_r] (2).
SplitRule = int | None | tuple[int, int]

_RANK_RE = re.compile(r"mp_rank_(\d+)")


def _merge_one(key: str, shards: list[torch.Tensor], rule: SplitRule) -> torch.Tensor:
    if rule is None:
        first = shards[0]
        for rank, other in enumerate(shards[1:], start=1):
            if other.shape != first.shape or not torch.equal(other, first):
                raise CheckpointError(f"{key!r} is marked replicated but rank {rank} differs from rank 0")
        return first
    dim, stride = (rule, 1) if isinstance(rule, int) else rule
    if stride == 1:
        return torch.cat(shards, dim=dim)
    # Each shard holds `stride` blocks; gather block i of every rank, then stack the gathered blocks.
    for rank, shard in enumerate(shards):
        if shard.shape[dim] % stride:
            raise CheckpointError(
                f"{key!r} on rank {rank} has size {shard.shape[dim]} along dim {dim}, not divisible by stride {stride}"
            )
    blocks = [shard.chunk(stride, dim=dim) for shard in shards]
    return torch.cat([torch.cat([b[i] for b in blocks], dim=dim) for i in range(stride)], dim=dim)


def merge_model_parallel_shards(
    shard_state_dicts: Sequence[Mapping[str, torch.Tensor]],
    split_rules: Mapping[str, SplitRule],
) -> dict[str, torch.Tensor]:
    """Merge per-rank state dicts (rank order) into one.

    ``split_rules`` maps a key regex (``re.search``; the first matching rule in mapping order wins) to how that
    tensor was split: a dim to concatenate along, ``None`` for replicated (rank 0 is kept after checking all ranks
    are equal), or ``(dim, stride)`` for fused column-parallel tensors such as Megatron's QKV. Keys matching no rule,
    or present on some ranks only, raise :class:`CheckpointError`; add ``r".*": None`` last for a default.
    """
    if not shard_state_dicts:
        raise CheckpointError("merge_model_parallel_shards got no shards")
    keys = list(shard_state_dicts[0])
    for rank, shard in enumerate(shard_state_dicts[1:], start=1):
        if set(shard) != set(keys):
            only_0 = sorted(set(keys) - set(shard))
            only_r = sorted(set(shard) - set(keys))
            raise CheckpointError(
                f"shard {rank} has different keys from shard 0: missing {format_keys(only_0)}; extra {format_keys(only_r)}"
            )
    compiled = [(re.compile(pattern), rule) for pattern, rule in split_rules.items()]
    unmatched = [k for k in keys if not any(p.search(k) for p, _ in compiled)]
    if unmatched:
        raise CheckpointError(f"{len(unmatched)} key(s) match no split rule: {format_keys(unmatched)}")
    merged: dict[str, torch.Tensor] = {}
    for key in keys:
        rule = next(rule for pattern, rule in compiled if pattern.search(key))
        merged[key] = _merge_one(key, [shard[key] for shard in shard_state_dicts], rule)
    return merged


def _shard_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        root = Path(paths)
        if not root.is_dir():
            raise CheckpointError(f"{root} is not a directory of mp_rank_XX_model_states.pt files")
        found = sorted(root.glob("mp_rank_*_model_states.pt"))
        if not found:
            raise CheckpointError(f"no mp_rank_XX_model_states.pt files in {root}")
        paths = found
    by_rank: dict[int, Path] = {}
    for p in map(Path, paths):
        match = _RANK_RE.search(p.name)
        if match is None:
            raise CheckpointError(f"cannot read the rank from shard file name {p.name!r} (expected mp_rank_XX_...)")
        rank = int(match.group(1))
        if rank in by_rank:
            raise CheckpointError(f"two shard files for rank {rank}: {by_rank[rank]} and {p}")
        by_rank[rank] = p
    if sorted(by_rank) != list(range(len(by_rank))):
        raise CheckpointError(f"shard ranks are not 0..{len(by_rank) - 1}: found {sorted(by_rank)}")
    return [by_rank[r] for r in range(len(by_rank))]


def load_deepspeed_mp_shards(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    map_location: Any = "cpu",
    mmap: bool = False,
) -> list[dict[str, torch.Tensor]]:
    """Read DeepSpeed ``mp_rank_XX_model_states.pt`` files (a directory or a list) and return their ``module``
    state dicts in rank order, ready for :func:`merge_model_parallel_shards`.

    Checks that the ranks are contiguous and agree with the ``mp_world_size`` recorded in each file.
    """
    shard_paths = _shard_paths(paths)
    state_dicts: list[dict[str, torch.Tensor]] = []
    for path in shard_paths:
        obj = load_checkpoint_object(path, map_location=map_location, mmap=mmap)
        if not isinstance(obj, Mapping) or "module" not in obj:
            found = list(obj)[:20] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{path} is not a DeepSpeed model-states file: no 'module' entry (found {found})")
        world = obj.get("mp_world_size")
        if world is not None and int(world) != len(shard_paths):
            raise CheckpointError(f"{path} says mp_world_size={world} but {len(shard_paths)} shard files were given")
        module = obj["module"]
        bad = [k for k, v in module.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: 'module' holds non-tensor entries {format_keys(bad)}")
        state_dicts.append(dict(module))
    return state_dicts
