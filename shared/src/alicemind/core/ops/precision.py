"""Mixed-precision choice by device capability, and an autocast helper that is a no-op in fp32."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX tiles, where bf16 matmuls beat fp32.

    ``torch.backends.cpu.get_cpu_capability()`` only reports the vector ISA level ("AVX2", "AVX512", ...), so an
    AVX512 answer is refined with torch's feature probes: AVX512 without the BF16 extension still emulates bf16.
    """
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX"):
        return False
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and probe() for probe in probes)


def autocast_dtype(device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype worth using on ``device``; None means stay in fp32.

    bf16 on CUDA GPUs that support it, fp16 on older CUDA GPUs, bf16 on CPUs with native bf16, fp32 otherwise
    (on an AVX2-only CPU a bf16 matmul is about 100x slower than fp32).
    """
    device = _as_device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype | None:
    """Map a precision name ("auto", "fp32", "bf16", "fp16") to an autocast dtype (None = fp32)."""
    if precision == "auto":
        return autocast_dtype(device)
    if precision not in _PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; expected one of 'auto', {', '.join(map(repr, _PRECISIONS))}"
        )
    return _PRECISIONS[precision]


@contextlib.contextmanager
def autocast(device: str | torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` on ``device`` with ``dtype``; does nothing when ``dtype`` is None (fp32)."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=_as_device(device).type, dtype=dtype):
        yield
