"""The transformer block every family uses: post-LN (BERT) or pre-LN (PALM, PLUG, ViT), optional cross-attention."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from alicemind.core.layers.activations import FeedForward
from alicemind.core.layers.attention import KVCache, MultiHeadAttention, StaticKVCache
from alicemind.core.layers.padding import PackedBatch


@dataclass
class BlockSpec:
    """Everything that distinguishes one family's block from another's."""

    hidden_size: int
    num_heads: int
    intermediate_size: int
    activation: str = "gelu"
    norm_first: bool = False  # pre-LN when True
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    fused_qkv: bool = False
    cross_attention: bool = False
    cross_kv_size: int | None = None
    bias: bool = True
    # Builds each norm as ``norm_class(hidden_size, eps=layer_norm_eps)``: a family whose released arithmetic is
    # not torch's LayerNorm (SDCUP's UER norm) passes its own module here.
    norm_class: Callable[..., nn.Module] = nn.LayerNorm


@dataclass
class LayerCache:
    """Decoding state of one block: growing self-attention KV and the fixed cross-attention KV."""

    self_kv: KVCache | StaticKVCache
    cross_kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def index_select(self, index: torch.Tensor) -> None:
        self.self_kv.index_select(index)
        if self.cross_kv is not None:
            self.cross_kv = tuple(t.index_select(0, index) for t in self.cross_kv)


def group_rows_by_source(row_source: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    """``(sources, group)`` when ``row_source`` ``[R]`` gives each source to ``group`` consecutive rows, else None.

    Beams (and extra samples) of one source are such a group: they can share that source's cross-attention
    keys/values (:func:`~alicemind.core.layers.attention.grouped_cross_attention`). ``sources`` has one entry
    per group.
    """
    rows = row_source.numel()
    if rows == 0:
        return None
    differs = (row_source != row_source[0]).nonzero()
    group = int(differs[0]) if differs.numel() else rows
    if rows % group:
        return None
    grid = row_source.view(rows // group, group)
    if not bool((grid == grid[:, :1]).all()):
        return None
    return grid[:, 0], group


class TransformerBlock(nn.Module):
    """Self-attention, optional cross-attention, feed-forward; each sub-layer wrapped in dropout + residual + LN.

    Submodules: ``self_attn``/``self_attn_norm``, ``cross_attn``/``cross_attn_norm``, ``ffn``/``ffn_norm``.
    """

    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.spec = spec
        h, eps = spec.hidden_size, spec.layer_norm_eps
        self.norm_first = spec.norm_first
        self.self_attn = MultiHeadAttention(
            h, spec.num_heads, fused=spec.fused_qkv, bias=spec.bias, dropout=spec.attention_dropout
        )
        self.self_attn_norm = spec.norm_class(h, eps=eps)
        if spec.cross_attention:
            self.cross_attn = MultiHeadAttention(
                h,
                spec.num_heads,
                cross=True,
                kv_size=spec.cross_kv_size,
                fused=spec.fused_qkv,
                bias=spec.bias,
                dropout=spec.attention_dropout,
            )
            self.cross_attn_norm = spec.norm_class(h, eps=eps)
        self.ffn = FeedForward(h, spec.intermediate_size, spec.activation, bias=spec.bias)
        self.ffn_norm = spec.norm_class(h, eps=eps)
        self.dropout = nn.Dropout(spec.dropout)

    def _residual(self, x: torch.Tensor, norm: nn.LayerNorm, sublayer) -> torch.Tensor:
        if self.norm_first:
            return x + self._drop(sublayer(norm(x)))
        return norm(x + self._drop(sublayer(x)))

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        # Skipping the identity module call in eval matters in decoding, where a step is many tiny ops.
        return self.dropout(x) if self.training and self.dropout.p > 0 else x

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        encoder_states: torch.Tensor | None = None,
        encoder_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
        packed: PackedBatch | None = None,
        skip_cross_attention: bool = False,
    ) -> torch.Tensor:
        """``mask`` and ``encoder_mask`` are SDPA-ready masks (see ``build_attention_mask``).

        ``skip_cross_attention=True`` runs a block that has cross-attention without it (self-attention and
        feed-forward only): VECO's plug-in cross-attention, unplugged for the monolingual/NLU pass.
        """
        self_kv = cache.self_kv if cache is not None else None
        x = self._residual(
            x,
            self.self_attn_norm,
            lambda h: self.self_attn(h, mask=mask, is_causal=is_causal, cache=self_kv, packed=packed),
        )
        if self.spec.cross_attention and not skip_cross_attention:
            if encoder_states is None and (cache is None or cache.cross_kv is None):
                raise ValueError("this block has cross-attention: pass encoder_states or a cache with cross_kv")
            static = cache.cross_kv if cache is not None else None
            x = self._residual(
                x,
                self.cross_attn_norm,
                lambda h: self.cross_attn(h, mask=encoder_mask, kv_states=encoder_states, static_kv=static),
            )
        return self._residual(x, self.ffn_norm, self.ffn)

    def init_cache(
        self,
        batch: int,
        capacity: int,
        encoder_states: torch.Tensor | None,
        *,
        dtype,
        device,
        position: torch.Tensor | None = None,
    ) -> LayerCache:
        """An empty self-attention cache, with cross-attention keys/values computed once from ``encoder_states``.

        With ``position`` (a long tensor ``[1]``) the self-attention cache is a fixed-size
        :class:`~alicemind.core.layers.attention.StaticKVCache` written at that position.
        """
        attn = self.self_attn
        shape = (batch, attn.num_heads, attn.head_dim, capacity)
        if position is not None:
            kv = StaticKVCache.empty(*shape, position, dtype=dtype, device=device)
        else:
            kv = KVCache.empty(*shape, dtype=dtype, device=device)
        cross = None
        if self.spec.cross_attention and encoder_states is not None:
            cross = self.cross_attn.project_kv(encoder_states)
        return LayerCache(kv, cross)
