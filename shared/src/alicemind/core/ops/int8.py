"""Int8 linear layers for CPU decoding (off by default).

Each output row's weights are stored as int8 with one fp32 scale (symmetric, per channel). On CPU the product runs
in torch's quantized engine (fbgemm / x86 / oneDNN, or qnnpack on ARM): each call quantises its activations to 8
bits with a per-call range, multiplies in int8 with int32 accumulation and rescales to fp32. This is the scheme
CTranslate2's ``int8`` compute type uses. Off CPU, or without a quantized engine, the weights are dequantised and
``F.linear`` runs in the activations' dtype. It trades accuracy for speed: measure before using it
(``benchmarks/bench_generation_int8_quality.py``).

Under ``torch.compile`` each map is one opaque custom op (``alicemind::int8_linear_dynamic``) and the rest of the
network is compiled around it.

Why not ``torch._weight_int8pack_mm`` (weight-only int8, fp32 activations): on this CPU it ran 17-40x slower than
``F.linear`` at decode shapes. Why not torchao: its CPU int8 speed comes from inductor, and it would be one more
dependency for an opt-in path. torch marks its quantized-tensor constructors deprecated; the one call that needs
them (packing) is isolated in :func:`_pack` so it can move when torch ships the replacement.
"""

from __future__ import annotations

import itertools
import warnings
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Int8Linear", "quantize_linear_weights"]


def _quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: ``weight ~= q * scale[:, None]`` with ``|q| <= 127``."""
    scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127.0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.float()


def _engine_available() -> bool:
    engine = torch.backends.quantized.engine
    return engine != "none" and engine in torch.backends.quantized.supported_engines


def _pack(q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
    """The quantized engine's prepacked weight (int8 ``q`` with per-row ``scale``) and fp32 bias."""
    zero_points = torch.zeros(q.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # the deprecation notice of quantized tensors; see the module docstring
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch._make_per_channel_quantized_tensor(q, scale.double(), zero_points, 0)
        return torch.ops.quantized.linear_prepack(qweight, bias)


# Packed weights by key. The packed object is a TorchScript class that dynamo cannot trace through, so the
# compiled graph holds the key (a constant) and the custom op below looks the weight up when it runs.
_PACKED: dict[int, Any] = {}
_KEYS = itertools.count()


@torch.library.custom_op("alicemind::int8_linear_dynamic", mutates_args=())
def _int8_linear_dynamic(x: torch.Tensor, key: int, out_features: int) -> torch.Tensor:
    """``x [N, in]`` times the packed int8 weight ``key`` (activations quantised per call) -> ``[N, out]`` fp32."""
    return torch.ops.quantized.linear_dynamic(x, _PACKED[key], False)


@_int8_linear_dynamic.register_fake
def _(x: torch.Tensor, key: int, out_features: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], out_features)


class Int8Linear(nn.Module):
    """A linear map with int8 weights and per-output-channel fp32 scales, for eval only.

    Built from an ``nn.Linear`` or from any weight matrix (a tied embedding table). Traces under
    ``torch.compile`` as one opaque op per map, so the rest of the network (norms, attention, activations) compiles
    around it."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        q, scale = _quantize_rows(weight.detach().float())
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight_int8", q)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", bias.detach().float().clone() if bias is not None else None)
        self._repack()

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]

    def _repack(self) -> None:
        """Pack the weight for the quantized engine when it lives on CPU (else ``_key`` is None: the fallback)."""
        release = self.__dict__.pop("_release", None)
        if release is not None:
            release()  # drop the previous packed copy now, not when this map is collected
        self._key = None
        if self.weight_int8.device.type == "cpu" and _engine_available():
            self._key = next(_KEYS)
            _PACKED[self._key] = _pack(self.weight_int8, self.weight_scale, self.bias)
            self._release = weakref.finalize(self, _PACKED.pop, self._key, None)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._repack()  # a device move or cast: the packed copy must follow the buffers
        return out

    def __getstate__(self):
        state = {**super().__getstate__(), "_key": None}
        state.pop("_release", None)  # the copy registers its own
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._repack()  # a copy gets its own packed weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._key is None or x.device.type != "cpu" or x.dtype != torch.float32:
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            return F.linear(x, self.dequantized_weight().to(x.dtype), bias)
        flat = x.reshape(-1, self.in_features).contiguous()
        out = _int8_linear_dynamic(flat, self._key, self.out_features)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")  # fmt: skip


def _with_hooks_of(old: nn.Module, new: nn.Module) -> nn.Module:
    """``new`` running the forward hooks registered on ``old`` (a pointer-generator's query capture, say). The
    dicts themselves are shared, so handles taken on ``old`` still remove their hook."""
    for attr in _HOOK_DICTS:
        if hasattr(old, attr):
            setattr(new, attr, getattr(old, attr))
    return new


def quantize_linear_weights(model: nn.Module, *, skip: tuple[str, ...] = ()) -> int:
    """Replace every ``nn.Linear`` of ``model`` (in place, eval use only) by :class:`Int8Linear`; return how many
    maps were quantised. Names starting with an entry of ``skip`` are left in fp32.

    A model whose logits are a tied ``F.linear`` on its embedding table opts in to an int8 copy of that table by
    having an ``int8_output_projection`` attribute (``None``) and a ``tied_output_projection()`` method returning
    ``(weight, bias)``; its logits then use the copy. The embedding lookup keeps the fp32 table."""
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(name.startswith(s) for s in skip)
    ]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _with_hooks_of(module, Int8Linear.from_linear(module)))
    tied = [
        (name, module)
        for name, module in model.named_modules()
        if hasattr(module, "tied_output_projection") and getattr(module, "int8_output_projection", 0) is None
        and not any(name.startswith(s) for s in skip)
    ]  # fmt: skip
    for _, module in tied:
        module.int8_output_projection = Int8Linear(*module.tied_output_projection())
    return len(targets) + len(tied)
