"""Two gloo processes under torchrun follow the single-process loss curve at the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from alicemind.core.training import Trainer, TrainingConfig

    out, batch_size = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)

    class Data(Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            # float64: DDP's all-reduce and a single process sum gradients in other orders; fp32 rounding of that,
            # amplified by Adam on near-zero gradients, would depend on the CPU's SIMD width.
            self.x = torch.randn(32, 6, generator=g, dtype=torch.float64)
            self.y = (self.x[:, :3].sum(1) > 0).long()
        def __len__(self):
            return 32
        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 2))
        def forward(self, x, labels):
            logits = self.net(x)
            acc = (logits.argmax(-1) == labels).float().mean()
            return {"loss": nn.functional.cross_entropy(logits, labels), "metrics": {"accuracy": acc}}

    torch.manual_seed(0)
    cfg = TrainingConfig(
        output_dir=out, max_steps=8, gradient_accumulation_steps=2, lr=2e-2, warmup_steps=1, weight_decay=0.01,
        max_grad_norm=1.0, log_every=1, save_every=4, progress_bar=False, seed=7,
    )
    trainer = Trainer(Model().double(), cfg, DataLoader(Data(), batch_size=batch_size, shuffle=True))
    state = trainer.train()
    if trainer.dist.rank == 0:
        print("WORLD", trainer.dist.world_size, "SAMPLER", type(trainer.train_dataloader.sampler).__name__)
    """
)


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    # Global batch 8 either way: one process x 4 per micro-batch, or two processes x 2, with 2 micro-batches.
    single = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "single"), "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    ddp_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = subprocess.Popen(
        [*ddp_cmd, str(script), str(tmp_path / "ddp"), "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    outputs = {}
    for name, proc in (("single", single), ("ddp", ddp)):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()[-3000:]
        outputs[name] = out.decode()
    assert "WORLD 1 SAMPLER RandomSampler" in outputs["single"]
    assert "WORLD 2 SAMPLER DistributedSampler" in outputs["ddp"]

    def records(run: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    single_log, ddp_log = records("single"), records("ddp")
    assert [r["step"] for r in ddp_log] == list(range(1, 9))  # rank 0 alone writes: no duplicated lines
    for a, b in zip(single_log, ddp_log):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
        assert b["accuracy"] == pytest.approx(a["accuracy"], abs=1e-6)
        assert b["lr"] == pytest.approx(a["lr"])
    assert single_log[-1]["loss"] < single_log[0]["loss"]

    final = tmp_path / "ddp" / "checkpoint-8"
    assert sorted(p.name for p in final.glob("rng_state_*")) == ["rng_state_0.safetensors", "rng_state_1.safetensors"]
    w_single = load_file(str(tmp_path / "single" / "checkpoint-8" / "model.safetensors"))
    w_ddp = load_file(str(final / "model.safetensors"))
    for key in w_single:
        torch.testing.assert_close(w_ddp[key], w_single[key], rtol=0, atol=1e-5)
