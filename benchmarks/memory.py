"""Peak resident memory of the current process on Linux, for the CPU benchmarks."""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` size field (VmRSS, VmHWM, ...) in MiB; NaN where there is no procfs."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS so the next reading covers only what runs after this call."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
