"""Replayable data order: a resumed epoch yields exactly the batches the interrupted one had left."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from alicemind.core.training.checkpoint import load_model_weights, save_model_weights
from alicemind.core.training.data import epoch_batches, shard_for_ranks
from alicemind.core.training.distributed import DistInfo

DATA = [{"i": torch.tensor(i)} for i in range(20)]


def _ids(batches) -> list[list[int]]:
    return [b["i"].tolist() for b in batches]


class EpochBatches(Sampler[list[int]]):
    """A custom batch sampler whose order depends on the epoch it is told."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(20, generator=torch.Generator().manual_seed(100 + self.epoch)).tolist()
        return iter([order[i : i + 3] for i in range(0, 20, 3)])

    def __len__(self) -> int:
        return 7


@pytest.mark.parametrize(
    "make",
    [
        lambda: DataLoader(DATA, batch_size=3, shuffle=True),
        lambda: DataLoader(DATA, batch_size=3, sampler=DistributedSampler(DATA, num_replicas=2, rank=1, seed=3)),
        lambda: DataLoader(DATA, batch_sampler=EpochBatches()),
        lambda: DataLoader(DATA, batch_size=3, shuffle=True, num_workers=1),
    ],
    ids=["random", "distributed", "custom-batch-sampler", "worker"],
)
def test_skip_replays_the_rest_of_the_epoch(make) -> None:
    epochs = [_ids(epoch_batches(make(), epoch, seed=11)) for epoch in range(2)]
    assert epochs[0] != epochs[1]  # each epoch has its own order...
    assert epochs[0] == _ids(epoch_batches(make(), 0, seed=11))  # ...reproducible from (seed, epoch)
    for skip in (0, 2, len(epochs[1])):
        # Fresh loaders and a disturbed global RNG: the order must not depend on either.
        torch.manual_seed(skip)
        assert _ids(epoch_batches(make(), 1, seed=11, skip=skip)) == epochs[1][skip:]


def test_random_sampler_order_equals_distributed_sampler_union() -> None:
    """One process at batch 4 sees, per step, the union of what two ranks at batch 2 see."""
    single = _ids(epoch_batches(DataLoader(DATA, batch_size=4, shuffle=True), 0, seed=5))
    ranks = []
    for rank in range(2):
        loader = shard_for_ranks(DataLoader(DATA, batch_size=2, shuffle=True), DistInfo(rank, 2), seed=5)
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.shuffle
        ranks.append(_ids(epoch_batches(loader, 0, seed=5)))
    assert [sorted(s) for s in single] == [sorted(a + b) for a, b in zip(*ranks)]


def test_shard_for_ranks_checks_custom_batch_samplers() -> None:
    info = DistInfo(rank=1, world_size=2)
    plain = DataLoader(DATA, batch_size=3)
    assert shard_for_ranks(plain, DistInfo(), seed=0) is plain  # single process: untouched
    sharded = shard_for_ranks(plain, info, seed=0)
    assert isinstance(sharded.sampler, DistributedSampler) and not sharded.sampler.shuffle
    assert _ids(sharded)[0] == [1, 3, 5]

    class Aware(EpochBatches):
        num_replicas, rank = 4, 1

    with pytest.raises(ValueError, match="num_replicas=4, rank=1 but this process is rank 1 of 2"):
        shard_for_ranks(DataLoader(DATA, batch_sampler=Aware()), info, seed=0)
    with pytest.warns(UserWarning, match="must split the data by rank"):
        shard_for_ranks(DataLoader(DATA, batch_sampler=EpochBatches()), info, seed=0)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 3)
        self.head = nn.Linear(3, 7, bias=False)
        self.head.weight = self.emb.weight


def test_model_weights_round_trip_with_tied_parameters(tmp_path) -> None:
    torch.manual_seed(0)
    source, target = Tied(), Tied()
    save_model_weights(source, tmp_path / "model.safetensors")
    load_model_weights(target, tmp_path / "model.safetensors")
    assert torch.equal(target.emb.weight, source.emb.weight)
    assert target.head.weight is target.emb.weight
    with pytest.raises(RuntimeError, match="Missing key"):
        load_model_weights(nn.Sequential(Tied(), nn.Linear(2, 2)), tmp_path / "model.safetensors")
