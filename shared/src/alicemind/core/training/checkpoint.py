"""Atomic training checkpoints: ``checkpoint-<step>/`` appears whole or not at all.

A checkpoint is written into a hidden temporary directory beside it and renamed into place with ``os.replace``,
so a crash (or SIGKILL) in the middle of a write leaves the previous checkpoints untouched and only a stale
temporary directory, which the next save removes. ``trainer_state.json`` is written last; a directory without it
is never taken for a checkpoint. Nothing here unpickles code: model weights are safetensors, RNG states are
safetensors, optimizer/scheduler/scaler states are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alicemind.core.checkpoint import load_safetensors, save_safetensors
from alicemind.core.checkpoint.errors import CorruptCheckpointError
from alicemind.core.training.config import TrainState

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_torch(obj: Any, path: Path) -> None:
    torch.save(obj, path)


def save_model_weights(model: nn.Module, path: Path) -> None:
    """``model.state_dict()`` as safetensors; tied parameters are stored once and restored as aliases."""
    save_safetensors(model.state_dict(), path)


def load_model_weights(model: nn.Module, path: Path, device: torch.device | str = "cpu") -> None:
    """Load weights written by :func:`save_model_weights` in place; missing or unexpected keys raise."""
    model.load_state_dict(load_safetensors(path, device=str(device)), strict=True)


def rng_state() -> dict[str, torch.Tensor]:
    """Python, NumPy, torch CPU and CUDA generator states as tensors (so they store as safetensors)."""
    _, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": torch.tensor(py_state, dtype=torch.int64),
        # random.gauss() caches its second draw; None when no draw is pending.
        "python_gauss": torch.tensor([py_gauss is not None, py_gauss or 0.0], dtype=torch.float64),
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_extra": torch.tensor([np_pos, np_has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_gauss], dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda_{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` captured."""
    has_gauss, gauss = state["python_gauss"].tolist()
    random.setstate((3, tuple(state["python"].tolist()), gauss if has_gauss else None))
    pos, has_gauss = state["numpy_extra"].tolist()
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, state["numpy_gauss"].item())
    )
    torch.set_rng_state(state["torch"])
    cuda = [state[f"cuda_{i}"] for i in range(torch.cuda.device_count()) if f"cuda_{i}" in state]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return output_dir / f"checkpoint-{step}"


def temp_dir(final: Path) -> Path:
    """The hidden directory a checkpoint is assembled in before it is renamed to ``final``."""
    return final.parent / f"{_TMP_PREFIX}{final.name}"


def begin(final: Path) -> Path:
    """Create a clean temporary directory for ``final`` (dropping any stale one left by a crash)."""
    tmp = temp_dir(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def write_rng(tmp: Path, rank: int) -> None:
    """This rank's RNG states into the checkpoint being assembled."""
    save_safetensors(rng_state(), tmp / f"rng_state_{rank}.safetensors")


def write_main(
    tmp: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    state: TrainState,
    *,
    weights: bool = True,
) -> None:
    """Model, optimizer, scheduler, scaler and (last) the trainer state into the checkpoint being assembled.

    ``weights=False`` leaves out the model and optimizer (a sharded strategy has every rank write those itself).
    """
    if weights:
        save_model_weights(model, tmp / MODEL_FILE)
        _save_torch(optimizer.state_dict(), tmp / "optimizer.pt")
    if scheduler is not None:
        _save_torch(scheduler.state_dict(), tmp / "scheduler.pt")
    if scaler is not None:
        _save_torch(scaler.state_dict(), tmp / "scaler.pt")
    state.save(tmp / STATE_FILE)
    for name in ("optimizer.pt", "scheduler.pt", "scaler.pt", STATE_FILE):  # safetensors files sync themselves
        if (tmp / name).is_file():
            _fsync(tmp / name)


def commit(tmp: Path, final: Path) -> None:
    """Move an assembled checkpoint into place atomically, replacing an older one of the same name."""
    old = None
    if final.exists():
        # os.replace cannot overwrite a non-empty directory: move the old one aside first.
        old = final.parent / f"{_TMP_PREFIX}old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir`` as (step, path), oldest first."""
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = _CKPT.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The most recent complete checkpoint, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def prune(output_dir: Path, keep_last_n: int | None) -> None:
    """Delete all but the newest ``keep_last_n`` checkpoints (``best/`` is separate and never touched)."""
    if keep_last_n is None:
        return
    for _, path in list_checkpoints(output_dir)[:-keep_last_n]:
        remove_checkpoint(path)


def remove_checkpoint(path: Path) -> None:
    """Delete one checkpoint directory; renamed out of the checkpoint namespace first, so a crash mid-delete
    leaves no half checkpoint behind."""
    doomed = path.parent / f"{_TMP_PREFIX}old-{path.name}"
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_stale(output_dir: Path) -> None:
    """Delete temporary directories a crashed save or prune left in ``output_dir``."""
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            if child.name.startswith(_TMP_PREFIX) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


def load_torch(path: Path, device: torch.device | str) -> Any:
    """Read an optimizer/scheduler/scaler state without executing pickled code."""
    return torch.load(path, map_location=device, weights_only=True)


def read_rng(ckpt: Path, rank: int) -> dict[str, torch.Tensor] | None:
    """This rank's saved RNG states, or None when the checkpoint has none for it (e.g. more ranks than before)."""
    path = ckpt / f"rng_state_{rank}.safetensors"
    return load_safetensors(path) if path.is_file() else None


# What reading a truncated, missing or garbled checkpoint file raises. A hostile pickle raises
# pickle.UnpicklingError, which is deliberately not here: it must stop the run, not be skipped.
UNREADABLE = (
    CorruptCheckpointError,
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    zipfile.BadZipFile,
)


@dataclass
class LoadedCheckpoint:
    """Everything a checkpoint holds, read into memory (on CPU) so that a broken file is found before any of it
    is applied to the model."""

    path: Path
    model: dict[str, torch.Tensor]
    optimizer: Any
    scheduler: Any
    scaler: Any
    state: TrainState
    rng: dict[str, torch.Tensor] | None


def read_checkpoint(path: Path, rank: int = 0, *, weights: bool = True) -> LoadedCheckpoint:
    """Open and read every file of the checkpoint at ``path``; raises one of :data:`UNREADABLE` if one is broken.

    ``weights=False`` skips the model and optimizer files (``model={}``, ``optimizer=None``): a sharded strategy
    reads those itself, at its own layout.
    """
    state_values = json.loads((path / STATE_FILE).read_text())
    if not isinstance(state_values, dict):
        raise ValueError(f"{path / STATE_FILE} holds no JSON object")
    known = {f for f in TrainState.__dataclass_fields__}
    state = TrainState(**{k: v for k, v in state_values.items() if k in known})
    return LoadedCheckpoint(
        path=path,
        model=load_safetensors(path / MODEL_FILE) if weights else {},
        optimizer=load_torch(path / "optimizer.pt", "cpu") if weights else None,
        scheduler=load_torch(path / "scheduler.pt", "cpu") if (path / "scheduler.pt").is_file() else None,
        scaler=load_torch(path / "scaler.pt", "cpu") if (path / "scaler.pt").is_file() else None,
        state=state,
        rng=read_rng(path, rank),
    )


def directory_size(path: Path) -> int:
    """Bytes held by the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def format_size(size: int) -> str:
    """``261.3 MB``-style size."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def set_aside(path: Path) -> Path:
    """Rename a broken checkpoint out of the checkpoint namespace (kept for inspection, never loaded or pruned)."""
    target = path.parent / f"corrupt-{path.name}"
    shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target
