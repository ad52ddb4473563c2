"""Precision is chosen from device capability: never bf16 on a CPU that emulates it."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.ops import autocast, autocast_dtype, cpu_has_native_bf16, resolve_precision


@pytest.mark.parametrize(
    "capability,bf16,amx,expected",
    [
        ("AVX2", True, True, None),  # AVX2-only CPU: bf16 is emulated, stay in fp32 even if probes misreport
        ("AVX512", False, False, None),  # AVX512 without the BF16 extension
        ("AVX512", True, False, torch.bfloat16),
        ("AVX512", False, True, torch.bfloat16),
        ("DEFAULT", False, False, None),
    ],
)
def test_cpu_dtype_follows_capability(monkeypatch, capability, bf16, amx, expected) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert autocast_dtype("cpu") is expected
    assert cpu_has_native_bf16() is (expected is torch.bfloat16)
    assert resolve_precision("auto", torch.device("cpu")) is expected


@pytest.mark.parametrize("bf16_ok,expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_dtype(monkeypatch, bf16_ok, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert autocast_dtype("cuda:0") is expected


def test_explicit_precisions_and_errors() -> None:
    assert resolve_precision("fp32", "cuda") is None
    assert resolve_precision("bf16", "cpu") is torch.bfloat16
    assert resolve_precision("fp16", "cpu") is torch.float16
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")


def test_autocast_context() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("cpu", None):
        assert (a @ b).dtype == torch.float32
        assert not torch.is_autocast_enabled("cpu")
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32
