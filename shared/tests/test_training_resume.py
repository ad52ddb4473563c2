"""Checkpoints and exact resume: a SIGKILLed run resumes to bit-identical weights, an interrupted checkpoint write
leaves the previous one usable, and only complete, safely-readable checkpoints are ever loaded."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alicemind.core.training import Trainer, TrainerCallback, TrainingConfig, latest_checkpoint, list_checkpoints
from alicemind.core.training import checkpoint as ckpt

# Dropout, shuffling across epochs, gradient accumulation, clipping, warm-up and a dataset that draws from Python's
# and NumPy's RNGs: every piece of state an exact resume has to restore.
SCRIPT = textwrap.dedent(
    """
    import os, random, signal, sys
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from alicemind.core.training import Trainer, TrainerCallback, TrainingConfig

    out, kill_at = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)

    class Noisy(Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(24, 6, generator=g)
            self.y = (self.x.sum(1) > 0).long()
        def __len__(self):
            return 24
        def __getitem__(self, i):
            noise = float(np.random.normal(scale=0.1)) + 0.01 * random.random()
            return {"x": self.x[i] + noise, "labels": self.y[i]}

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.3), nn.GELU(), nn.Linear(32, 2))
        def forward(self, x, labels):
            return {"loss": nn.functional.cross_entropy(self.net(x), labels)}

    class Kill(TrainerCallback):
        def on_step_end(self, trainer):
            if trainer.state.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(0)
    cfg = TrainingConfig(
        output_dir=out, max_steps=10, gradient_accumulation_steps=2, lr=1e-2, warmup_steps=2, max_grad_norm=0.5,
        save_every=4, log_every=1, progress_bar=False, resume="auto", seed=123,
    )
    Trainer(Model(), cfg, DataLoader(Noisy(), batch_size=4, shuffle=True), callbacks=[Kill()]).train()
    """
)


def _launch(script: Path, out: Path, kill_at: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(script), str(out), str(kill_at)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _finish(proc: subprocess.Popen) -> int:
    _, err = proc.communicate(timeout=120)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(err.decode())
    return proc.returncode


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    # 24 samples / batch 4 / accumulation 2 = 3 steps per epoch; checkpoints at 4 and 8; killed after step 7,
    # so the resume restarts mid-epoch from step 4 and crosses the epoch boundary at step 6 again.
    runs = [_launch(script, straight, -1), _launch(script, crashed, 7)]
    assert [_finish(p) for p in runs] == [0, -signal.SIGKILL]
    assert [s for s, _ in list_checkpoints(crashed)] == [4]
    # Step 7 was killed inside on_step_end, before its log line.
    assert len((crashed / "metrics.jsonl").read_text().splitlines()) == 6

    assert _finish(_launch(script, crashed, -1)) == 0
    assert [s for s, _ in list_checkpoints(crashed)] == [4, 8, 10]
    final_a = load_file(str(straight / "checkpoint-10" / "model.safetensors"))
    final_b = load_file(str(crashed / "checkpoint-10" / "model.safetensors"))
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    state_a = json.loads((straight / "checkpoint-10" / "trainer_state.json").read_text())
    state_b = json.loads((crashed / "checkpoint-10" / "trainer_state.json").read_text())
    assert state_a["loss"] == state_b["loss"] and state_a["epoch"] == state_b["epoch"] == 3
    # The log reads as one run: the resumed run dropped the killed run's lines after step 4 and rewrote them.
    assert (straight / "metrics.jsonl").read_text() == (crashed / "metrics.jsonl").read_text()
    assert state_a["log_history"] == state_b["log_history"]
    # Dropout made the run sensitive to RNG: a different resume point without RNG restore would not match.
    assert not torch.equal(
        final_a["net.0.weight"], load_file(str(straight / "checkpoint-4" / "model.safetensors"))["net.0.weight"]
    )


class Data(Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(32, 5, generator=g)
        self.y = self.x @ torch.randn(5, 1, generator=g)

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.2), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        return {"loss": nn.functional.mse_loss(self.net(x), y)}


def _trainer(out: Path, *, callbacks=(), **overrides) -> Trainer:
    torch.manual_seed(0)
    values = dict(output_dir=str(out), max_steps=6, save_every=2, lr=1e-2, progress_bar=False, log_every=1, seed=5)
    values.update(overrides)
    return Trainer(
        Regressor(), TrainingConfig(**values), DataLoader(Data(), batch_size=8, shuffle=True), callbacks=callbacks
    )


class StartStep(TrainerCallback):
    def on_train_begin(self, trainer) -> None:
        self.step = trainer.state.step


def test_interrupted_checkpoint_write_keeps_previous_and_resume_uses_it(tmp_path: Path, monkeypatch) -> None:
    reference = _trainer(tmp_path / "reference", resume=None)
    reference.train()

    out = tmp_path / "run"
    real_save, seen = ckpt._save_torch, {}

    def failing_save(obj, path: Path) -> None:
        if "checkpoint-4" in path.parent.name:
            seen["model_written"] = (path.parent / ckpt.MODEL_FILE).is_file()
            seen["previous"] = {f.name: f.read_bytes() for f in (out / "checkpoint-2").iterdir()}
            raise OSError("simulated: disk full while writing the optimizer state")
        real_save(obj, path)

    monkeypatch.setattr(ckpt, "_save_torch", failing_save)
    with pytest.raises(OSError, match="disk full"):
        _trainer(out).train()
    monkeypatch.setattr(ckpt, "_save_torch", real_save)

    assert seen["model_written"] is True
    # No partial dir left; run.json records the run so that the next one resumes it only if it is the same.
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "metrics.jsonl", "run.json"]
    assert {f.name: f.read_bytes() for f in (out / "checkpoint-2").iterdir()} == seen["previous"]
    # A crash can also leave a stale temporary dir or a directory without its state file: neither is a checkpoint.
    (out / ".tmp-checkpoint-4").mkdir()
    (out / "checkpoint-5").mkdir()
    (out / "checkpoint-5" / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(out) == out / "checkpoint-2"

    start = StartStep()
    resumed = _trainer(out, callbacks=[start])
    state = resumed.train()
    assert start.step == 2 and state.step == 6
    for a, b in zip(reference.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert not (out / ".tmp-checkpoint-4").exists()


def test_resume_explicit_path_keep_last_n_and_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _trainer(out, keep_last_n=2).train()
    assert [s for s, _ in list_checkpoints(out)] == [4, 6]
    # Resuming a finished run trains no further.
    start = StartStep()
    assert _trainer(out, callbacks=[start]).train().step == 6 and start.step == 6
    # An explicit checkpoint path, and a longer max_steps than the saved run had.
    start = StartStep()
    state = _trainer(tmp_path / "other", resume=str(out / "checkpoint-4"), max_steps=8, callbacks=[start]).train()
    assert start.step == 4 and state.step == 8 and state.max_steps == 8
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        _trainer(tmp_path / "x", resume=str(tmp_path / "missing")).train()


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_resume_refuses_pickled_code(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _trainer(out, max_steps=2).train()
    torch.save({"state": {}, "param_groups": [], "evil": _Payload()}, out / "checkpoint-2" / "optimizer.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        _trainer(out, max_steps=4).train()


def test_rng_state_round_trip() -> None:
    random.gauss(0, 1)  # leaves a cached second Gaussian in Python's generator state
    np.random.normal()
    state = ckpt.rng_state()
    expected = (random.random(), random.gauss(0, 1), np.random.normal(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ckpt.set_rng_state(state)
    got = (random.random(), random.gauss(0, 1), np.random.normal(), torch.rand(3))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])


class CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.state.step == self.step:
            raise RuntimeError("simulated crash")


def test_fp16_resume_restores_grad_scaler(tmp_path: Path) -> None:
    reference = _trainer(tmp_path / "reference", resume=None, precision="fp16")
    reference.train()
    out = tmp_path / "run"
    crashed = _trainer(out, precision="fp16", callbacks=[CrashAt(3)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.train()
    saved = ckpt.load_torch(out / "checkpoint-2" / "scaler.pt", "cpu")
    # The scale backed off from its initial 2**16 after overflowing steps: a fresh scaler would differ.
    assert saved["scale"] < 2.0**16
    resumed = _trainer(out, precision="fp16")
    resumed.train()
    assert resumed.scaler.get_scale() == reference.scaler.get_scale()
    for a, b in zip(reference.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
