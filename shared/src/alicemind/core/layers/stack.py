"""A stack of transformer blocks: encoder (bidirectional, optionally padding-free) or decoder (causal, cached)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from alicemind.core.layers.attention import _all_real, build_attention_mask
from alicemind.core.layers.block import BlockSpec, LayerCache, TransformerBlock
from alicemind.core.layers.padding import PackedBatch


@dataclass
class StackOutput:
    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


class TransformerStack(nn.Module):
    """``num_layers`` identical blocks (``layers.{i}``) and, for pre-LN stacks, a ``final_norm``.

    ``padding_free=True`` packs the real tokens once, so linear layers, norms and the feed-forward never touch
    padding; attention runs varlen on CUDA or re-pads around SDPA elsewhere. Outputs equal the padded path.
    ``None`` (the default) packs ragged batches in eager training steps only, where it measured 1.48x the padded
    step (benchmarks/results/encoder_train.md); evaluation, and anything traced by ``torch.compile``, keep the
    padded path, whose shapes do not depend on the data. ``False`` never packs.
    """

    def __init__(
        self, spec: BlockSpec, num_layers: int, *, final_norm: bool | None = None, padding_free: bool | None = None
    ):
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(spec) for _ in range(num_layers))
        final_norm = spec.norm_first if final_norm is None else final_norm
        self.final_norm = spec.norm_class(spec.hidden_size, eps=spec.layer_norm_eps) if final_norm else None
        self.padding_free = padding_free
        self.gradient_checkpointing = False

    def forward(
        self,
        x: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        causal: bool = False,
        attn_bias: torch.Tensor | None = None,
        encoder_states: torch.Tensor | None = None,
        encoder_padding_mask: torch.Tensor | None = None,
        caches: list[LayerCache] | None = None,
        padding_free: bool | None = None,
        output_hidden_states: bool = False,
        skip_cross_attention: bool = False,
    ) -> StackOutput:
        """Run every block. Masks are ``[B, L]`` with True/1 = real token; ``attn_bias`` is additive per head.

        ``skip_cross_attention=True`` runs blocks built with cross-attention as self-attention + feed-forward only.
        """
        padding_free = self.padding_free if padding_free is None else padding_free
        if padding_free is None:
            padding_free = self.training and not torch.compiler.is_compiling()
        q_len = x.shape[1]
        # A static cache masks its own buffer (causality and unwritten positions) from a tensor position.
        static = bool(caches) and caches[0].self_kv.static
        if static and padding_mask is not None:
            raise ValueError("a static KV cache takes no decoder padding_mask (its rows are all real)")
        past = caches[0].self_kv.length if caches and not static else 0
        k_len = past + q_len
        if padding_mask is not None and padding_mask.shape[-1] != k_len:
            raise ValueError(f"padding_mask covers {padding_mask.shape[-1]} positions, expected {k_len}")
        packed = None
        use_packed = (
            padding_free
            and padding_mask is not None
            and not causal
            and caches is None
            and attn_bias is None
            and encoder_states is None  # packed rows have no batch axis for cross-attention to line up with
            and not output_hidden_states
            and not _all_real(padding_mask)
        )
        if use_packed:
            packed = PackedBatch.from_mask(padding_mask)
            mask = None
            x = packed.pack(x)
        else:
            # One-token decoding with a cache attends to every past position: no causal mask needed.
            need_causal = causal and q_len > 1 and not static
            mask = build_attention_mask(
                padding_mask, q_len, causal=need_causal, k_len=k_len, bias=attn_bias, dtype=x.dtype
            )
        enc_mask = build_attention_mask(encoder_padding_mask, q_len, dtype=x.dtype)
        is_causal = causal and mask is None
        hidden_states = [x] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            kwargs = dict(
                mask=mask,
                is_causal=is_causal,
                encoder_states=encoder_states,
                encoder_mask=enc_mask,
                cache=caches[i] if caches is not None else None,
                packed=packed,
            )
            if skip_cross_attention:  # only passed when asked, so blocks without the argument keep working
                kwargs["skip_cross_attention"] = True
            if self.gradient_checkpointing and self.training:
                x = checkpoint(lambda t, layer=layer, kw=kwargs: layer(t, **kw), x, use_reentrant=False)
            else:
                x = layer(x, **kwargs)
            if hidden_states is not None:
                hidden_states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if hidden_states is not None:
                hidden_states[-1] = x
        if packed is not None:
            x = packed.unpack(x)
        return StackOutput(x, tuple(hidden_states) if hidden_states is not None else None)

    def init_caches(
        self,
        batch: int,
        capacity: int,
        encoder_states: torch.Tensor | None = None,
        *,
        dtype=None,
        device=None,
        position: torch.Tensor | None = None,
    ) -> list[LayerCache]:
        """Empty per-layer caches for incremental decoding (cross KV computed once here).

        ``position`` (a long tensor ``[1]``, shared by all layers) makes them static: fixed-size buffers written at
        that position (see :class:`~alicemind.core.layers.attention.StaticKVCache`).
        """
        ref = next(self.parameters())
        dtype, device = dtype or ref.dtype, device or ref.device
        return [
            layer.init_cache(batch, capacity, encoder_states, dtype=dtype, device=device, position=position)
            for layer in self.layers
        ]
