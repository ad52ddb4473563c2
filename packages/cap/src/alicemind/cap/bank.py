"""RepresentationBank: the teacher, pre-trained and snapshot representations of every training example.

Memory is bounded: ``N * H * bytes(dtype) * (2 + max_snapshots) + 8 * N`` (labels), fixed when the bank is
created and printed up front. Snapshot columns form a ring: once ``max_snapshots`` are stored, a new snapshot
replaces the oldest. Above ``memmap_threshold_bytes`` (or whenever ``directory`` is given) the columns are
numpy memory maps on disk, so only the rows a batch touches are paged in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alicemind.core.io import atomic_write_text

_DTYPES = {"float16": (torch.float16, np.float16), "float32": (torch.float32, np.float32), "bfloat16": None}
META_FILE = "bank.json"


def bank_bytes(num_examples: int, hidden: int, max_snapshots: int, dtype: str = "float16") -> int:
    """The bank's size in bytes for a dataset of ``num_examples`` (the documented bound)."""
    width = 2 if dtype in ("float16", "bfloat16") else 4
    return num_examples * hidden * width * (2 + max_snapshots) + 8 * num_examples


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class RepresentationBank:
    """Per-example representations: ``teacher`` [N,1,H], ``pretrained`` [N,1,H], ``snapshots`` [N,S,H], labels [N]."""

    def __init__(
        self,
        num_examples: int,
        hidden: int,
        *,
        max_snapshots: int = 9,
        dtype: str = "float16",
        directory: str | Path | None = None,
        memmap_threshold_bytes: int = 1 << 30,
        log=print,
    ) -> None:
        if num_examples < 1 or hidden < 1:
            raise ValueError(f"a bank needs num_examples >= 1 and hidden >= 1, got {num_examples}, {hidden}")
        if dtype == "bfloat16":  # numpy has no bfloat16: keep those banks in memory
            self.torch_dtype, np_dtype = torch.bfloat16, None
        elif dtype in _DTYPES:
            self.torch_dtype, np_dtype = _DTYPES[dtype]
        else:
            raise ValueError(f"bank dtype must be float16, bfloat16 or float32, got {dtype!r}")
        self.num_examples, self.hidden, self.max_snapshots, self.dtype = num_examples, hidden, max_snapshots, dtype
        self.nbytes = bank_bytes(num_examples, hidden, max_snapshots, dtype)
        on_disk = np_dtype is not None and (directory is not None or self.nbytes > memmap_threshold_bytes)
        if on_disk and directory is None:
            raise ValueError(
                f"the bank needs {_format_bytes(self.nbytes)} (over memmap_threshold_bytes): give a directory for "
                "its memory-mapped files"
            )
        self.directory = Path(directory) if on_disk else None
        widths = {"teacher": 1, "pretrained": 1, "snapshots": max_snapshots}
        self._columns: dict[str, torch.Tensor] = {}
        existing = self._read_meta() if self.directory is not None else None
        for name, width in widths.items():
            shape = (num_examples, width, hidden)
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self.directory / f"{name}.npy"
                mode = "r+" if existing is not None and path.exists() else "w+"
                array = np.lib.format.open_memmap(path, mode=mode, dtype=np_dtype, shape=shape)
                self._columns[name] = torch.from_numpy(array)
            else:
                self._columns[name] = torch.zeros(shape, dtype=self.torch_dtype)
        self.labels = torch.full((num_examples,), -1, dtype=torch.long)
        self.has_labels = False
        self.filled = {"teacher": False, "pretrained": False}
        self.snapshot_tags: list[Any] = []  # oldest first; tag = the step/epoch that produced it
        self._slots: list[int] = []  # ring slot of each stored snapshot, oldest first
        if existing is not None:
            self._restore_meta(existing)
        where = f"memory-mapped in {self.directory}" if self.directory is not None else "in memory"
        log(
            f"CAP bank: {num_examples} examples x {hidden} dims x (teacher + pre-trained + {max_snapshots} snapshots) "
            f"in {dtype} = {_format_bytes(self.nbytes)}, {where}"
        )

    # -- writing ------------------------------------------------------------------------------------------------
    def write(self, name: str, idx: torch.Tensor, reps: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Store L2-normalised ``reps`` [b, H] of examples ``idx`` into bank ``name`` (the newest snapshot slot)."""
        reps = torch.nn.functional.normalize(reps.detach().float(), p=2, dim=-1).to(self.torch_dtype).cpu()
        idx = idx.detach().long().cpu()
        if name == "snapshots":
            if not self._slots:
                raise RuntimeError("call begin_snapshot(tag) before writing a snapshot")
            self._columns[name][idx, self._slots[-1]] = reps
        else:
            self._columns[name][idx, 0] = reps
        if labels is not None:
            self.labels[idx] = labels.detach().long().cpu()
            self.has_labels = True

    def begin_snapshot(self, tag: Any) -> None:
        """Open a snapshot column (replacing the oldest once ``max_snapshots`` are stored)."""
        if self.max_snapshots == 0:
            raise RuntimeError("this bank keeps no snapshots (max_snapshots=0)")
        if len(self._slots) < self.max_snapshots:
            slot = len(self._slots)
        else:
            slot = self._slots.pop(0)
            self.snapshot_tags.pop(0)
        self._slots.append(slot)
        self.snapshot_tags.append(tag)

    def mark_filled(self, name: str) -> None:
        """Record that a full encoding pass wrote bank ``name`` (and flush it to disk)."""
        if name in self.filled:
            self.filled[name] = True
        self.flush()

    def drop_snapshots_after(self, tag: Any) -> None:
        """Forget snapshots whose tag is greater than ``tag`` (a resume from an earlier checkpoint)."""
        while self.snapshot_tags and self.snapshot_tags[-1] > tag:
            self.snapshot_tags.pop()
            self._slots.pop()
        self.flush()

    # -- reading ------------------------------------------------------------------------------------------------
    def rows(self, name: str, idx: torch.Tensor) -> torch.Tensor | None:
        """Bank ``name``'s entries of ``idx`` as [len(idx), R, H] (snapshots oldest first); None if not filled."""
        idx = idx.detach().long().cpu()
        if name == "snapshots":
            if not self._slots:
                return None
            return self._columns[name][idx][:, self._slots]
        if not self.filled[name]:
            return None
        return self._columns[name][idx]

    def width(self, name: str) -> int:
        if name == "snapshots":
            return len(self._slots)
        return int(self.filled[name])

    def memory_report(self) -> str:
        return f"{_format_bytes(self.nbytes)} ({self.dtype}, {len(self._slots)}/{self.max_snapshots} snapshots)"

    # -- state --------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "num_examples": self.num_examples, "hidden": self.hidden, "max_snapshots": self.max_snapshots,
            "dtype": self.dtype, "filled": self.filled, "snapshot_tags": self.snapshot_tags, "slots": self._slots,
            "has_labels": self.has_labels,
        }  # fmt: skip

    def flush(self) -> None:
        """Write memory maps and the bank's state (labels included) to ``directory``, if on disk."""
        if self.directory is None:
            return
        for column in self._columns.values():
            array = column.numpy()
            if isinstance(array.base, np.memmap):
                array.base.flush()
        np.save(self.directory / "labels.npy", self.labels.numpy())
        atomic_write_text(self.directory / META_FILE, json.dumps(self.state()))

    def _read_meta(self) -> dict[str, Any] | None:
        path = self.directory / META_FILE
        if not path.is_file():
            return None
        meta = json.loads(path.read_text(encoding="utf-8"))
        mine = (self.num_examples, self.hidden, self.max_snapshots, self.dtype)
        theirs = (meta["num_examples"], meta["hidden"], meta["max_snapshots"], meta["dtype"])
        if mine != theirs:
            raise ValueError(f"the bank in {self.directory} has shape/dtype {theirs}, this run asks for {mine}")
        return meta

    def _restore_meta(self, meta: dict[str, Any]) -> None:
        self.filled = dict(meta["filled"])
        self.snapshot_tags, self._slots = list(meta["snapshot_tags"]), list(meta["slots"])
        self.has_labels = bool(meta["has_labels"])
        labels = self.directory / "labels.npy"
        if labels.is_file():
            self.labels = torch.from_numpy(np.load(labels)).long()


@torch.no_grad()
def encode_into_bank(
    model: torch.nn.Module,
    capture,
    batches: Iterable[dict[str, torch.Tensor]],
    bank: RepresentationBank,
    name: str,
    *,
    eval_mode: bool = True,
    device: torch.device | None = None,
    progress: bool = True,
    description: str | None = None,
) -> None:
    """Run ``model`` over every batch (each with an ``idx`` column) and store its representations in ``name``.

    ``capture`` is the :class:`~alicemind.cap.adapters.RepresentationCapture` on ``model``. With ``eval_mode``
    dropout is off (the original keeps whatever mode the model is in: pass False for parity).
    """
    from tqdm.auto import tqdm

    from alicemind.core.training import move_to_device

    was_training = model.training
    if eval_mode:
        model.eval()
    device = device or next(model.parameters()).device
    batches = list(batches) if not hasattr(batches, "__len__") else batches
    bar = tqdm(batches, desc=description or f"CAP bank: {name}", disable=not progress, leave=False)
    try:
        for batch in bar:
            batch = move_to_device(dict(batch), device)
            idx = batch["idx"]
            model(**batch)
            bank.write(name, idx, capture.take(), batch.get("labels"))
    finally:
        model.train(was_training)
    bank.mark_filled(name)
