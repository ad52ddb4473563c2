"""Trainer(strategy=ShardedStrategy(...)) in one process: the parallelize hook runs, checkpoints are
torch.distributed.checkpoint folders, resume continues with the same losses, clipping equals torch's."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alicemind.core.training import Trainer, TrainingConfig
from alicemind.core.training.sharded import ShardedStrategy


class _Data(Dataset):
    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g, dtype=torch.float64)
        self.y = (self.x.sum(-1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, x, labels):
        return {"loss": nn.functional.cross_entropy(self.net(x), labels)}


def _trainer(out, max_steps=4, resume=None, calls=None):
    def parallelize(model, mesh):
        assert mesh is None  # one process: no mesh
        if calls is not None:
            calls.append(type(model).__name__)
        return model

    config = TrainingConfig(max_steps=max_steps, per_device_batch_size=4, lr=1e-2, log_every=1, save_every=2,
                            keep_last_n=None, output_dir=str(out), device="cpu", progress_bar=False,
                            precision="fp32", max_grad_norm=0.05, resume=resume)  # fmt: skip
    loader = DataLoader(_Data(), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
    return Trainer(_Model(), config, loader, strategy=ShardedStrategy(parallelize))


def _losses(trainer) -> list[float]:
    return [r["loss"] for r in trainer.state.log_history if "loss" in r]


def test_sharded_strategy_checkpoints_with_dcp_and_resumes_exactly(tmp_path):
    calls: list[str] = []
    whole = _trainer(tmp_path / "a", calls=calls)
    whole.train()
    assert calls == ["_Model"]
    saved = tmp_path / "a" / "checkpoint-2"
    assert (saved / "dcp" / ".metadata").is_file() and (saved / "trainer_state.json").is_file()
    assert not (saved / "model.safetensors").exists() and not (saved / "optimizer.pt").exists()
    assert (saved / "scheduler.pt").is_file() and (saved / "rng_state_0.safetensors").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same layout: no data-order warning
        resumed = _trainer(tmp_path / "b", resume=str(saved))
        resumed.train()
    want = _losses(whole)
    assert len(want) == 4 and want[0] != want[2]
    assert _losses(resumed) == pytest.approx(want, abs=1e-12)  # steps 1-2 from the checkpoint's history
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    state = json.loads((tmp_path / "b" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["step"] == 4


def test_a_checkpoint_without_shards_is_refused_naming_it(tmp_path):
    plain = _trainer(tmp_path / "a")
    plain.strategy = None  # the DDP path writes model.safetensors, no dcp/ folder
    plain.train()
    with pytest.raises(Exception, match="checkpoint-2"):
        _trainer(tmp_path / "b", resume=str(tmp_path / "a" / "checkpoint-2")).train()


def test_sharded_clip_equals_torch_clip():
    a, b = _Model(), _Model()
    batch = _Data()[0:4]
    for m in (a, b):
        m(**batch)["loss"].backward()
    want = nn.utils.clip_grad_norm_(a.parameters(), 0.01)
    got = ShardedStrategy(lambda m, mesh: m).clip_grad_norm(b.parameters(), 0.01)
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-15)


def _tensor_parallel(model, mesh):
    """Column/row-parallel linears over ``mesh``: DTensor weights next to plain ones in the same model."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    if mesh is not None:
        parallelize_module(model.net, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    return model


class _Normed(_Model):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(2).double()  # stays a plain tensor under tensor parallelism

    def forward(self, x, labels):
        return {"loss": nn.functional.cross_entropy(self.norm(self.net(x)), labels)}


def test_dtensor_checkpoint_resumes_in_a_plain_process_with_other_optimizer_groups(tmp_path):
    """A one-rank gloo group makes real DTensors: core's fused AdamW needs their groups split from the plain
    parameters, and a checkpoint of that run (more groups) resumes without a mesh (fewer groups) exactly."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    def trainer(out, strategy, resume=None):
        config = TrainingConfig(max_steps=4, per_device_batch_size=4, lr=1e-2, log_every=1, save_every=2,
                                keep_last_n=None, output_dir=str(out), device="cpu", progress_bar=False,
                                precision="fp32", max_grad_norm=0.05, resume=resume)  # fmt: skip
        loader = DataLoader(_Data(), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
        return Trainer(_Normed(), config, loader, strategy=strategy)

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        strategy = ShardedStrategy(_tensor_parallel, mesh_shape=(1,), mesh_dim_names=("tp",))
        sharded = trainer(tmp_path / "tp", strategy)
        kinds = [{isinstance(p, DTensor) for p in g["params"]} for g in sharded.optimizer.param_groups]
        assert {True} in kinds and {False} in kinds  # split: no group mixes DTensors and tensors
        assert sharded.optimizer.defaults.get("fused") or any(g.get("fused") for g in sharded.optimizer.param_groups)
        sharded.train()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    plain = trainer(tmp_path / "one", ShardedStrategy(_tensor_parallel), resume=str(tmp_path / "tp" / "checkpoint-2"))
    assert len(plain.optimizer.param_groups) < len(sharded.optimizer.param_groups)
    plain.train()
    assert _losses(plain) == pytest.approx(_losses(sharded), abs=1e-12)
    assert [g["lr"] for g in plain.optimizer.param_groups][0] == pytest.approx(
        sharded.optimizer.param_groups[0]["lr"], abs=1e-15)  # fmt: skip
