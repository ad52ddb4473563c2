"""Replayable data order: per-epoch seeding of the shuffling sampler, and skipping already-consumed batches.

Exact resume needs the batches of a resumed epoch to come in the order the interrupted run saw them. A
``DistributedSampler`` already derives its order from ``seed + epoch`` (after ``set_epoch``); a ``RandomSampler``
is given a generator seeded with ``seed + epoch`` at every epoch (replacing one the caller set) so that it does
too. Both then produce ``torch.randperm(n)`` from the same seed, so one process and N processes at the same global
batch see the same samples per step. Consumed batches are skipped at the batch-sampler level, so no sample
is loaded twice.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler, Sampler

from alicemind.core.training.distributed import DistInfo


class _SkipBatches(Sampler[list[int]]):
    """A batch sampler that drops the first ``skip`` batches of another one."""

    def __init__(self, batch_sampler: Iterable[list[int]], skip: int) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batch_sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.skip)  # type: ignore[arg-type]


def _loader_kwargs(loader: DataLoader) -> dict:
    """The worker/collation settings of ``loader``, to rebuild it over another sampler."""
    kwargs = dict(
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
    )
    if loader.pin_memory_device:
        kwargs["pin_memory_device"] = loader.pin_memory_device
    return kwargs


def shard_for_ranks(loader: DataLoader, info: DistInfo, seed: int) -> DataLoader:
    """Give each rank its own slice of the data (DistributedSampler semantics) unless the loader already does.

    A loader built with ``batch_size``/``shuffle`` is rebuilt over a ``DistributedSampler`` with the same batch size
    per device; a custom batch sampler is left alone (it must shard by rank itself).
    """
    if info.world_size <= 1 or isinstance(loader.dataset, IterableDataset):
        return loader
    batch_sampler = loader.batch_sampler
    if type(batch_sampler) is not BatchSampler:
        replicas = getattr(batch_sampler, "num_replicas", None)
        if replicas is None:
            warnings.warn(
                "custom batch sampler under torch.distributed: it is used as is, so it must split the data by rank",
                stacklevel=3,
            )
        elif replicas != info.world_size or getattr(batch_sampler, "rank", info.rank) != info.rank:
            raise ValueError(
                f"the batch sampler is set up for num_replicas={replicas}, rank={getattr(batch_sampler, 'rank', None)} "
                f"but this process is rank {info.rank} of {info.world_size}"
            )
        return loader
    sampler = batch_sampler.sampler
    if isinstance(sampler, DistributedSampler):
        return loader
    shuffle = isinstance(sampler, RandomSampler)
    dist_sampler = DistributedSampler(
        loader.dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed
    )
    return DataLoader(
        loader.dataset,
        batch_size=batch_sampler.batch_size,
        sampler=dist_sampler,
        drop_last=batch_sampler.drop_last,
        **_loader_kwargs(loader),
    )


def _samplers(loader: DataLoader) -> list[object]:
    found = [loader.batch_sampler, getattr(loader.batch_sampler, "sampler", None), loader.sampler]
    unique: list[object] = []
    for s in found:
        if s is not None and all(s is not u for u in unique):
            unique.append(s)
    return unique


def epoch_batches(loader: DataLoader, epoch: int, seed: int, skip: int = 0) -> Iterator:
    """An iterator over the batches of ``epoch``, in its replayable order, after dropping the first ``skip``."""
    for sampler in _samplers(loader):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if isinstance(sampler, RandomSampler):
            sampler.generator = torch.Generator().manual_seed(seed + epoch)
    if skip == 0:
        return iter(loader)
    if loader.batch_sampler is None or isinstance(loader.dataset, IterableDataset):
        # No index-level control: read and drop (correct for deterministic datasets, but loads the data).
        return itertools.islice(iter(loader), skip, None)
    skipping = DataLoader(
        loader.dataset, batch_sampler=_SkipBatches(loader.batch_sampler, skip), **_loader_kwargs(loader)
    )
    return iter(skipping)


def batches_per_epoch(loader: DataLoader) -> int | None:
    """``len(loader)`` where it is defined."""
    try:
        return len(loader)
    except TypeError:
        return None
