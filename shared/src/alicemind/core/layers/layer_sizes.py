"""Per-layer sizes: blocks whose head count or FFN width differ from the config's (structurally pruned models).

A model folder whose ``config.json`` holds ``layer_sizes`` (a list of ``{"module", "num_attention_heads",
"intermediate_size"}``, one per resized :class:`TransformerBlock`, by module name) is built at the config's uniform
sizes and then resized here before its weights load, so ``from_pretrained`` of the family's own class reads it
strictly. A config without the key builds exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from alicemind.core.layers.block import TransformerBlock

LAYER_SIZES_KEY = "layer_sizes"


def _linear(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    """A fresh Linear of the new shape on ``old``'s device and dtype (its values come from the checkpoint)."""
    new = nn.Linear(in_features, out_features, bias=old.bias is not None)
    return new.to(device=old.weight.device, dtype=old.weight.dtype)


def resize_block(block: TransformerBlock, num_heads: int, intermediate_size: int) -> None:
    """Give ``block``'s self-attention ``num_heads`` heads of unchanged width and its FFN ``intermediate_size``."""
    if num_heads < 1 or intermediate_size < 1:
        raise ValueError(
            f"a resized block needs >= 1 head and >= 1 FFN neuron, got {num_heads} and {intermediate_size}"
        )
    attn = block.self_attn
    inner = num_heads * attn.head_dim
    if getattr(attn, "qkv_proj", None) is not None:
        attn.qkv_proj = _linear(attn.qkv_proj, attn.qkv_proj.in_features, 3 * inner)
    else:
        for name in ("q_proj", "k_proj", "v_proj"):
            old = getattr(attn, name)
            setattr(attn, name, _linear(old, old.in_features, inner))
    attn.out_proj = _linear(attn.out_proj, inner, attn.out_proj.out_features)
    attn.num_heads = num_heads
    ffn = block.ffn
    ffn.fc_in = _linear(ffn.fc_in, ffn.fc_in.in_features, intermediate_size)
    ffn.fc_out = _linear(ffn.fc_out, intermediate_size, ffn.fc_out.out_features)


def apply_layer_sizes(model: nn.Module, sizes: Sequence[Mapping[str, Any]]) -> nn.Module:
    """Resize the named blocks of ``model`` in place (see the module docstring); returns ``model``."""
    for entry in sizes:
        name = entry.get("module")
        try:
            block = model.get_submodule(str(name))
        except AttributeError:
            raise ValueError(f"layer_sizes names {name!r}, which {type(model).__name__} does not have") from None
        if not isinstance(block, TransformerBlock):
            raise ValueError(f"layer_sizes names {name!r}, a {type(block).__name__}, not a TransformerBlock")
        resize_block(block, int(entry["num_attention_heads"]), int(entry["intermediate_size"]))
    return model


def layer_sizes_of(model: nn.Module) -> list[dict[str, Any]]:
    """The ``layer_sizes`` record of every TransformerBlock of ``model`` (what :func:`apply_layer_sizes` reads)."""
    return [
        {"module": name, "num_attention_heads": m.self_attn.num_heads, "intermediate_size": m.ffn.fc_in.out_features}
        for name, m in model.named_modules()
        if isinstance(m, TransformerBlock)
    ]
