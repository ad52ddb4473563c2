"""PreSumm's pointer-generator (``-p_gen true``): mix the vocabulary distribution with a copy distribution.

The copy distribution is the last decoder layer's cross-attention, averaged over heads and scatter-added onto the
source token ids; the mixture weight is ``p = sigmoid(gate([context; decoder_output]))``.

Core's attention runs on SDPA, which returns outputs but not attention probabilities, so this file recomputes the
probabilities of that one layer from its cross-attention query (captured with a forward hook on ``q_proj``) and
its cached keys. It is a separate, small function because it needs probabilities, not attention outputs; it does
not replace the layer's attention, which still runs in core.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Keeps log() finite where both distributions are exactly zero (ids absent from the source and masked logits).
_TINY = 1e-20


def copy_attention(query: torch.Tensor, keys: torch.Tensor, encoder_mask: torch.Tensor) -> torch.Tensor:
    """Cross-attention probabilities averaged over heads.

    ``query`` ``[B, T, H]`` is the output of the layer's ``q_proj``; ``keys`` ``[B, heads, S, d]`` its keys;
    ``encoder_mask`` ``[B, S]`` (True = real token). Returns ``[B, T, S]`` rows summing to one.
    """
    heads, head_dim = keys.shape[1], keys.shape[-1]
    q = query.unflatten(-1, (heads, head_dim)).transpose(1, 2)
    scores = torch.matmul(q, keys.transpose(-1, -2)) / math.sqrt(head_dim)
    scores = scores.masked_fill(~encoder_mask.bool()[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1).mean(dim=1)


class CopyGate(nn.Module):
    """``p_gen`` from ``[context; decoder_output]`` (PreSumm's ``generator.prob_proj``)."""

    def __init__(self, context_size: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(context_size + hidden_size, 1)

    def forward(
        self,
        gen_logits: torch.Tensor,
        decoder_output: torch.Tensor,
        attention: torch.Tensor,
        memory: torch.Tensor,
        source_ids: torch.Tensor,
        *,
        double_softmax: bool = False,
    ) -> torch.Tensor:
        """Log-probabilities ``[B, T, V]`` of the mixture.

        ``attention`` ``[B, T, S]`` from :func:`copy_attention`, ``memory`` the encoder states ``[B, S, He]`` and
        ``source_ids`` ``[B, S]``. ``double_softmax`` reproduces PreSumm's extra softmax over the copy scores.
        """
        context = torch.matmul(attention, memory.to(attention.dtype))
        p_gen = torch.sigmoid(self.proj(torch.cat([context, decoder_output], dim=-1)))
        index = source_ids[:, None, :].expand(-1, attention.shape[1], -1)
        copy = torch.zeros_like(gen_logits).scatter_add(2, index, attention)
        if double_softmax:
            copy = copy.softmax(dim=-1)
        mixed = p_gen * F.softmax(gen_logits, dim=-1) + (1.0 - p_gen) * copy
        return torch.log(mixed.clamp_min(_TINY))


class QueryCapture:
    """Forward hook that keeps the latest output of a ``q_proj`` (the copy attention's query)."""

    def __init__(self, module: nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args, output: torch.Tensor) -> None:
        self.value = output

    def pop(self) -> torch.Tensor:
        if self.value is None:
            raise RuntimeError("the last decoder layer's cross-attention did not run; no copy query to read")
        value, self.value = self.value, None
        return value
