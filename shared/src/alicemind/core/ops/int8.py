"""Weight-only int8 linear layers for CPU decoding (off by default): each output row's weights are stored as int8
with one fp32 scale (symmetric, per channel), and multiplied by torch's int8-weight kernel without dequantising
the whole matrix. Activations stay fp32. It trades accuracy for memory bandwidth: measure before using it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Int8WeightLinear", "quantize_linear_weights"]


def _quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: ``weight ~= q * scale[:, None]`` with ``|q| <= 127``."""
    scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127.0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.float()


class Int8WeightLinear(nn.Module):
    """``nn.Linear`` with int8 weights and per-output-channel fp32 scales (weight-only quantisation)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        q, scale = _quantize_rows(linear.weight.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", q)
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            out = F.linear(x, self.dequantized_weight().to(x.dtype))
        else:
            flat = x.reshape(-1, self.in_features)
            out = torch._weight_int8pack_mm(flat.contiguous(), self.weight_int8, self.weight_scale)
            out = out.reshape(*x.shape[:-1], self.out_features)
        return out + self.bias.to(out.dtype) if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_linear_weights(model: nn.Module, *, skip: tuple[str, ...] = ()) -> int:
    """Replace every ``nn.Linear`` of ``model`` (in place, eval use only) by :class:`Int8WeightLinear`; return how
    many. Names starting with an entry of ``skip`` are left in fp32. Tied output projections that call
    ``F.linear`` on an embedding table are not modules and stay fp32."""
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(name.startswith(s) for s in skip)
    ]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, Int8WeightLinear(module))
    return len(targets)
