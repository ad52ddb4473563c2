"""Run identity (``run.json``): an output folder is resumed only by the same run, a different run stops with a
message naming what differs, --overwrite / --resume say what they do, a corrupt newest checkpoint falls back to
the previous intact one, and save_every=0 / keep_final_checkpoint=false write no leftover checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alicemind.core.cli import CliError
from alicemind.core.training import (
    RunConflictError,
    RunIdentity,
    Trainer,
    TrainerCallback,
    TrainingConfig,
    list_checkpoints,
)
from alicemind.core.training import checkpoint as ckpt
from alicemind.core.training.run_manifest import sha256_file, sha256_tree


class Data(Dataset):
    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 5, generator=g)
        self.y = self.x @ torch.randn(5, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.2), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        return {"loss": nn.functional.mse_loss(self.net(x), y)}


class StartStep(TrainerCallback):
    def on_train_begin(self, trainer) -> None:
        self.step = trainer.state.step


class CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.state.step == self.step:
            raise RuntimeError("simulated crash")


def _trainer(out: Path | None, *, callbacks=(), data: Dataset | None = None, identity=None, **overrides) -> Trainer:
    torch.manual_seed(0)
    values = dict(max_steps=6, save_every=2, lr=1e-2, progress_bar=False, log_every=1, seed=5)
    values.update(overrides)
    cfg = TrainingConfig(output_dir=str(out) if out else None, **values)
    loader = DataLoader(data or Data(), batch_size=8, shuffle=True)
    return Trainer(Regressor(), cfg, loader, callbacks=callbacks, run_identity=identity)


def _weights(trainer: Trainer) -> list[torch.Tensor]:
    return [t.detach().clone() for t in trainer.model.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_different_run_into_used_output_dir_stops_and_names_the_differences(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _trainer(out, lr=5e-5, seed=1).train()
    recorded = json.loads((out / "run.json").read_text())["identity"]
    assert recorded["values"]["training.lr"] == 5e-5 and "alicemind-core" in recorded["code"]
    assert "training.save_every" not in recorded["values"]  # checkpoint cadence does not change the result
    # Before run identity this resumed the finished run: zero steps trained, the old weights returned as new.
    with pytest.raises(RunConflictError) as info:
        _trainer(out, lr=1e-4, seed=2, max_steps=9, data=Data(48)).train()
    message = str(info.value)
    assert "training.lr: 5e-05 -> 0.0001" in message and "training.seed: 1 -> 2" in message
    assert "data.num_batches: 4 -> 6" in message and "training.max_steps: 6 -> 9" in message
    assert "--overwrite" in message and "--resume" in message and "\n" not in message
    assert isinstance(info.value, CliError)  # the command line prints it as one line, exit status 2
    # A family's fingerprints are compared too.
    fp = RunIdentity({"data": {"corpus": "c.txt"}}, {"data": "aaa"})
    _trainer(tmp_path / "fp", identity=fp).train()
    with pytest.raises(RunConflictError, match="data fingerprint differs"):
        _trainer(tmp_path / "fp", identity=fp.updated(fingerprints={"data": "bbb"})).train()


def test_overwrite_starts_fresh_and_says_so(tmp_path: Path, capsys) -> None:
    reference = _trainer(tmp_path / "reference", lr=1e-3)
    reference.train()
    out = tmp_path / "run"
    _trainer(out, keep_last_n=1).train()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    start = StartStep()
    fresh = _trainer(out, lr=1e-3, overwrite=True, callbacks=[start])
    fresh.train()
    err = capsys.readouterr().err
    assert start.step == 0 and _same(_weights(fresh), _weights(reference))
    assert f"--overwrite: starting a new run in {out}; deleted checkpoint-6, metrics.jsonl, run.json" in err
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own outputs are deleted
    assert json.loads((out / "run.json").read_text())["identity"]["values"]["training.lr"] == 1e-3


def test_force_resume_continues_despite_differences_and_says_so(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _trainer(out, callbacks=[CrashAt(5)]).train()
    capsys.readouterr()
    start = StartStep()
    _trainer(out, lr=2e-2, resume="force", callbacks=[start]).train()
    assert start.step == 4
    err = capsys.readouterr().err
    assert "resuming run from checkpoint-4 (step 4 of 6) despite: training.lr: 0.01 -> 0.02" in err
    history = json.loads((out / "run.json").read_text())["history"]
    assert history == [{"step": None, "differences": ["training.lr: 0.01 -> 0.02"]}]
    with pytest.raises(ValueError, match="cannot go with resume='force'"):
        TrainingConfig(max_steps=1, overwrite=True, resume="force")


def test_same_run_resumes_saying_so_and_a_longer_run_extends_it(tmp_path: Path, capsys) -> None:
    reference = _trainer(tmp_path / "reference")
    reference.train()
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _trainer(out, callbacks=[CrashAt(3)]).train()
    capsys.readouterr()
    resumed = _trainer(out)
    resumed.train()
    assert "alicemind: resuming run from checkpoint-2 (step 2 of 6)\n" in capsys.readouterr().err
    assert _same(_weights(resumed), _weights(reference))
    # Only the length changed: the same run, continued.
    start = StartStep()
    _trainer(out, max_steps=8, callbacks=[start]).train()
    assert start.step == 6
    assert "resuming run from checkpoint-6 (step 6 of 8) despite: training.max_steps: 6 -> 8" in capsys.readouterr().err


def test_resume_off_refuses_a_used_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _trainer(out, max_steps=2).train()
    for off in (None, "never"):
        with pytest.raises(RunConflictError, match="holds a previous run and resume is off"):
            _trainer(out, max_steps=2, resume=off).train()
    # A folder with checkpoints but no run.json (written before runs were recorded) is not taken for this run.
    (out / "run.json").unlink()
    with pytest.raises(RunConflictError, match="no run.json"):
        _trainer(out, max_steps=2).train()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTIONS = {
    "truncated safetensors": lambda c: _truncate(c / ckpt.MODEL_FILE),
    "truncated optimizer": lambda c: _truncate(c / "optimizer.pt"),
    "missing optimizer": lambda c: (c / "optimizer.pt").unlink(),
    "bad trainer_state JSON": lambda c: (c / ckpt.STATE_FILE).write_text('{"step": 4, '),
    "truncated rng": lambda c: _truncate(c / "rng_state_0.safetensors"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_intact_one(tmp_path: Path, capsys, corruption) -> None:
    reference = _trainer(tmp_path / "reference")
    reference.train()
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _trainer(out, callbacks=[CrashAt(5)]).train()
    CORRUPTIONS[corruption](out / "checkpoint-4")
    capsys.readouterr()
    start = StartStep()
    resumed = _trainer(out, callbacks=[start])
    resumed.train()  # before: a traceback from the truncated file
    err = capsys.readouterr().err
    assert start.step == 2 and _same(_weights(resumed), _weights(reference))
    assert "warning: checkpoint-4 is unreadable" in err and "moved it to corrupt-checkpoint-4" in err
    assert "resuming run from checkpoint-2 (step 2 of 6)" in err
    assert [s for s, _ in list_checkpoints(out)] == [2, 4, 6] and (out / "corrupt-checkpoint-4").is_dir()


def test_an_explicit_corrupt_checkpoint_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _trainer(out, max_steps=4).train()
    _truncate(out / "checkpoint-4" / ckpt.MODEL_FILE)
    with pytest.raises(ckpt.CorruptCheckpointError, match="cannot resume from"):
        _trainer(tmp_path / "other", resume=str(out / "checkpoint-4")).train()


def test_save_every_0_writes_no_checkpoint_and_sizes_are_logged(tmp_path: Path, capsys) -> None:
    out = tmp_path / "none"
    _trainer(out, save_every=0).train()
    # Before: a final checkpoint-6 with the optimizer state was written anyway.
    assert list_checkpoints(out) == []
    assert "wrote checkpoint" not in capsys.readouterr().err
    # Rerunning the same run with nothing to resume trains it again, and says so.
    start = StartStep()
    _trainer(out, save_every=0, callbacks=[start]).train()
    assert start.step == 0 and "yet: training it from step 0" in capsys.readouterr().err

    out = tmp_path / "final"
    trainer = _trainer(out, save_every=4, keep_final_checkpoint=False)
    trainer.train()
    err = capsys.readouterr().err
    size = ckpt.format_size(ckpt.directory_size(out / "checkpoint-6"))
    assert "wrote checkpoint-4 (" in err and f"wrote checkpoint-6 ({size})" in err and size.endswith("kB")
    assert trainer.finalize() is None
    assert [s for s, _ in list_checkpoints(out)] == [4]
    assert "keep_final_checkpoint=false: deleted checkpoint-6" in capsys.readouterr().err
    kept = _trainer(tmp_path / "kept", max_steps=2)
    kept.train()
    assert kept.finalize() == tmp_path / "kept" / "checkpoint-2"


def test_hashes_cover_content_not_just_size_and_mtime(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "x.txt").write_text("hello")
    before = (sha256_file(a / "x.txt"), sha256_tree(a))
    stat = (a / "x.txt").stat()
    (a / "x.txt").write_text("jello")  # same size; put the old mtime back
    os.utime(a / "x.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sha256_file(a / "x.txt") != before[0] and sha256_tree(a) != before[1]
