"""Length-bucketed batching: batches of similar lengths (little padding) in a random but reproducible order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[list[int]]):
    """A batch sampler that sorts examples by length inside large random buckets.

    Each epoch the indices are shuffled, cut into buckets of ``batch_size * bucket_size_multiplier`` examples,
    sorted by length inside each bucket and cut into batches; the batch order is then shuffled. The result depends
    only on ``(seed, epoch)``: call :meth:`set_epoch` at the start of every epoch, as with DistributedSampler.
    For distributed training every rank builds the same global batch list and takes every ``num_replicas``-th
    batch starting at ``rank``; the list is padded by repeating batches (or truncated when ``drop_last``) so all
    ranks run the same number of steps. Use it as ``DataLoader(dataset, batch_sampler=sampler)``.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size_multiplier: int = 50,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if bucket_size_multiplier < 1:
            raise ValueError(f"bucket_size_multiplier must be >= 1, got {bucket_size_multiplier}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1:
            raise ValueError("lengths must be a 1-D sequence of example lengths")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_size = batch_size * bucket_size_multiplier
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation for ``epoch`` (same seed and epoch give the same batches)."""
        self.epoch = epoch

    def _global_batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        # Sort inside each bucket; stable so equal lengths keep the shuffled order.
        buckets = [order[i : i + self.bucket_size] for i in range(0, n, self.bucket_size)]
        order = np.concatenate([b[np.argsort(self.lengths[b], kind="stable")] for b in buckets]) if n else order
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _num_global(self, num_batches: int) -> int:
        if self.num_replicas == 1:
            return num_batches
        if self.drop_last:
            return num_batches - num_batches % self.num_replicas
        return -(-num_batches // self.num_replicas) * self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._global_batches()
        total = self._num_global(len(batches))
        if total > len(batches) and batches:  # repeat from the start so every rank gets the same count
            batches = (batches * (total // len(batches) + 1))[:total]
        for batch in batches[:total][self.rank :: self.num_replicas]:
            yield batch.tolist()

    def __len__(self) -> int:
        n = len(self.lengths)
        num_batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return self._num_global(num_batches) // self.num_replicas
