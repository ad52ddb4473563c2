"""BlockSpec.norm_class: a family's own norm module in every norm slot of the block and the stack."""

from __future__ import annotations

import torch
from torch import nn

from alicemind.core.layers import BlockSpec, TransformerBlock, TransformerStack


class ScaledNorm(nn.Module):
    """A norm unlike LayerNorm (x * 2), to see that it is the one that runs."""

    def __init__(self, hidden_size: int, eps: float = 1e-12):
        super().__init__()
        self.hidden_size, self.eps = hidden_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def _spec(**kw) -> BlockSpec:
    return BlockSpec(8, 2, 16, dropout=0.0, attention_dropout=0.0, **kw)


def test_default_norm_is_layernorm_and_outputs_unchanged():
    torch.manual_seed(0)
    block = TransformerBlock(_spec())
    assert type(block.self_attn_norm) is nn.LayerNorm and type(block.ffn_norm) is nn.LayerNorm
    torch.manual_seed(0)
    explicit = TransformerBlock(_spec(norm_class=nn.LayerNorm))
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(block(x), explicit(x), rtol=0, atol=0)


def test_custom_norm_fills_every_slot_and_runs():
    spec = _spec(norm_class=ScaledNorm, cross_attention=True, layer_norm_eps=1e-6, norm_first=True)
    stack = TransformerStack(spec, 2)
    norms = [stack.final_norm] + [m for layer in stack.layers for m in (layer.self_attn_norm, layer.cross_attn_norm,
                                                                       layer.ffn_norm)]  # fmt: skip
    assert all(type(n) is ScaledNorm and n.hidden_size == 8 and n.eps == 1e-6 for n in norms)
    assert not any(isinstance(m, nn.LayerNorm) for m in stack.modules())
    # Post-LN block with the x*2 norm: out = 2 * (y + ffn(y)) where y = 2 * (x + attn(x)).
    block = TransformerBlock(_spec(norm_class=ScaledNorm))
    x = torch.randn(1, 4, 8)
    y = 2 * (x + block.self_attn(x))
    torch.testing.assert_close(block(x), 2 * (y + block.ffn(y)))
