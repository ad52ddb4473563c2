"""Where training numbers go: a tqdm bar, ``metrics.jsonl`` and (optionally) TensorBoard, on rank 0 only."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

METRICS_FILE = "metrics.jsonl"


class MetricsLogger:
    """Writes one JSON line per logged step; disabled entirely (``enabled=False``) on ranks other than 0.

    On resume from ``start_step`` the lines of later steps (written by the interrupted run after its last
    checkpoint) are dropped, so the file reads as one uninterrupted run.
    """

    def __init__(
        self,
        output_dir: Path | None,
        *,
        enabled: bool,
        total_steps: int,
        start_step: int,
        progress_bar: bool,
        tensorboard: bool,
    ) -> None:
        self.enabled = enabled
        self._file = None
        self._tb = None
        self._bar = tqdm(total=total_steps, initial=start_step, disable=not (enabled and progress_bar), desc="train")
        if not enabled or output_dir is None:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / METRICS_FILE
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= start_step]
            path.write_text("".join(line + "\n" for line in kept))
        self._file = path.open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard=True but tensorboard is not installed; skipping it", stacklevel=2)
            else:
                self._tb = SummaryWriter(str(output_dir / "tensorboard"), purge_step=start_step or None)

    def advance(self, n: int = 1) -> None:
        """Move the progress bar."""
        self._bar.update(n)

    def log(self, step: int, values: dict[str, Any], *, prefix: str = "train") -> None:
        """Record ``values`` for ``step`` in every enabled sink."""
        if not self.enabled:
            return
        if prefix == "train":
            self._bar.set_postfix({k: f"{values[k]:.4g}" for k in ("loss", "lr") if k in values}, refresh=False)
        if self._file is not None:
            keys = values if prefix == "train" else {f"{prefix}_{k}": v for k, v in values.items()}
            self._file.write(json.dumps({"step": step, **keys}) + "\n")
            self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        """Flush and close every sink."""
        self._bar.close()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
