"""Multi-head attention over ``scaled_dot_product_attention``: self, cross and causal, with a KV cache and a
padding-free path. Every family's attention is this module; a family only chooses its options."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers.padding import PackedBatch

try:  # varlen flash attention (CUDA only); the CPU path re-pads around SDPA instead
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn
except ImportError:  # pragma: no cover - older torch
    _varlen_attn = None


class KVCache:
    """Self-attention keys/values of past positions, preallocated and grown geometrically so decoding is not
    quadratic in copies. Tensors are ``[B, heads, capacity, head_dim]``; ``length`` positions are filled."""

    static = False

    def __init__(self, key: torch.Tensor, value: torch.Tensor, length: int = 0):
        self.key, self.value, self.length = key, value, length

    @classmethod
    def empty(cls, batch: int, heads: int, head_dim: int, capacity: int, *, dtype, device) -> KVCache:
        shape = (batch, heads, max(capacity, 1), head_dim)
        return cls(torch.empty(shape, dtype=dtype, device=device), torch.empty(shape, dtype=dtype, device=device))

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new ``[B, heads, T, head_dim]`` keys/values; return all filled positions."""
        end = self.length + key.shape[2]
        if end > self.key.shape[2]:
            grow = max(end, 2 * self.key.shape[2]) - self.key.shape[2]
            pad = (0, 0, 0, grow)
            self.key, self.value = F.pad(self.key, pad), F.pad(self.value, pad)
        self.key[:, :, self.length : end] = key
        self.value[:, :, self.length : end] = value
        self.length = end
        return self.key[:, :, :end], self.value[:, :, :end]

    def index_select(self, index: torch.Tensor) -> None:
        """Keep/reorder batch rows (beam search, finished rows); copies only the filled positions."""
        for name in ("key", "value"):
            old = getattr(self, name)
            new = old.new_empty((index.numel(), *old.shape[1:]))
            # Straight into the new buffer: an index_select temporary plus a copy would move the cache twice.
            torch.index_select(old[:, :, : self.length], 0, index, out=new[:, :, : self.length])
            setattr(self, name, new)


class StaticKVCache:
    """Self-attention keys/values in buffers of a fixed ``capacity``, written in place at a tensor position.

    Tensors are ``[B, heads, capacity, head_dim]``; ``position`` is a long tensor ``[1]`` (shared by every layer
    of a decoder) holding the first unwritten position. Nothing about a step is a Python number, so a decode step
    over this cache has the same shapes and guards at every position: ``torch.compile`` traces it once. Attention
    reads the whole buffer through :meth:`visible` (unwritten positions masked), which gives the same result as
    reading the filled part. The owner advances ``position`` after a step (``position.add_(T)``).
    """

    static = True

    def __init__(self, key: torch.Tensor, value: torch.Tensor, position: torch.Tensor):
        self.key, self.value, self.position = key, value, position
        self._spare: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def empty(cls, batch, heads, head_dim, capacity, position, *, dtype, device) -> StaticKVCache:
        shape = (batch, heads, capacity, head_dim)
        # Zeros, not empty: masked positions still enter SDPA's matmul, and garbage there could be NaN.
        return cls(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device),
                   position)  # fmt: skip

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``[B, heads, T, head_dim]`` at ``position``..``position + T - 1``; return the whole buffers."""
        index = self.position + torch.arange(key.shape[2], device=key.device)
        self.key.index_copy_(2, index, key)
        self.value.index_copy_(2, index, value)
        return self.key, self.value

    def visible(self, q_len: int) -> torch.Tensor:
        """Bool ``[1, 1, q_len, capacity]``: query ``i`` (at ``position + i``) sees the keys up to its own."""
        keys = torch.arange(self.key.shape[2], device=self.key.device)
        queries = self.position + torch.arange(q_len, device=self.key.device)
        return (keys[None, :] <= queries[:, None])[None, None]

    def index_select(self, index: torch.Tensor) -> None:
        """Keep/reorder batch rows. The same row count (beam reordering) gathers into a second buffer kept for
        it and swaps the two, so no step allocates; another count (expanding to beams) allocates once."""
        if index.numel() != self.key.shape[0]:
            self.key, self.value = self.key.index_select(0, index), self.value.index_select(0, index)
            self._spare = None
            return
        if self._spare is None:
            self._spare = (torch.empty_like(self.key), torch.empty_like(self.value))
        spare_key, spare_value = self._spare
        torch.index_select(self.key, 0, index, out=spare_key)
        torch.index_select(self.value, 0, index, out=spare_value)
        self._spare = (self.key, self.value)
        self.key, self.value = spare_key, spare_value


def causal_mask(q_len: int, k_len: int, device=None) -> torch.Tensor:
    """Bool ``[q_len, k_len]``: query i (the last q_len of k_len positions) sees keys up to its own position."""
    offset = k_len - q_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(diagonal=offset)


def _all_real(key_padding_mask: torch.Tensor) -> bool:
    """Whether no position is padding, so the mask can be dropped.

    Eager only: the answer depends on the data, and asking it inside ``torch.compile`` is a host sync and a graph
    break. A compiled graph keeps the (all-True or not) mask instead, which SDPA treats the same; a caller that
    knows its batch is full passes no mask at all (the collator's decision, made once per batch outside the graph).
    """
    if torch.compiler.is_compiling():
        return False
    return bool(key_padding_mask.all())


def build_attention_mask(
    key_padding_mask: torch.Tensor | None,
    q_len: int,
    *,
    causal: bool = False,
    k_len: int | None = None,
    bias: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | None:
    """Combine key padding (``[B, Lk]``, True = real), causality and an additive bias into one SDPA mask.

    Returns None when nothing needs masking so SDPA can pick its fastest kernel. A bool mask is returned unless
    a bias is present, in which case padding becomes ``-inf`` in a float mask.
    """
    k_len = k_len if k_len is not None else (key_padding_mask.shape[-1] if key_padding_mask is not None else q_len)
    mask = None
    if key_padding_mask is not None and not _all_real(key_padding_mask):
        mask = key_padding_mask.bool()[:, None, None, :]
    if causal:
        device = key_padding_mask.device if key_padding_mask is not None else None
        tri = causal_mask(q_len, k_len, device)[None, None]
        mask = tri if mask is None else mask & tri
    if bias is None:
        return mask
    bias = bias.to(dtype)
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf"))


def grouped_cross_attention(q, k, v, mask: torch.Tensor | None, dropout: float = 0.0) -> torch.Tensor:
    """Cross-attention where consecutive groups of query rows share one source's keys/values (beam search).

    ``q`` is ``[G * N, heads, T, d]``; ``k``/``v`` are ``[N, heads, S, d]`` and ``mask`` is per source (``[N, 1,
    1, S]``) or None. A group's rows become extra query positions of its source, so the keys/values are neither
    copied per beam nor read once per beam; each query still attends on its own, so the result is exact.
    """
    rows, heads, t, d = q.shape
    sources = k.shape[0]
    if rows % sources:
        raise ValueError(f"{rows} query rows cannot be split into groups over {sources} sources' keys/values")
    if mask is not None and mask.shape[0] not in (1, sources):
        raise ValueError(f"a grouped cross-attention mask must be per source ({sources}), got {mask.shape[0]} rows")
    group = rows // sources
    q = q.reshape(sources, group, heads, t, d).transpose(1, 2).reshape(sources, heads, group * t, d)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    return out.reshape(sources, heads, group, t, d).transpose(1, 2).reshape(rows, heads, t, d)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with separate or fused projections.

    Self-attention: ``q_proj``/``k_proj``/``v_proj`` or fused ``qkv_proj`` (q|k|v thirds). Cross-attention:
    ``q_proj`` plus ``k_proj``/``v_proj`` or fused ``kv_proj`` reading ``kv_size``-wide encoder states.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        cross: bool = False,
        kv_size: int | None = None,
        fused: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.cross, self.fused = num_heads, hidden_size // num_heads, cross, fused
        self.dropout = dropout
        kv_size = kv_size or hidden_size
        if not cross and fused:
            self.qkv_proj = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        else:
            self.q_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
            if fused:
                self.kv_proj = nn.Linear(kv_size, 2 * hidden_size, bias=bias)
            else:
                self.k_proj = nn.Linear(kv_size if cross else hidden_size, hidden_size, bias=bias)
                self.v_proj = nn.Linear(kv_size if cross else hidden_size, hidden_size, bias=bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # [..., T, H] -> [..., T, heads, head_dim]
        return x.unflatten(-1, (self.num_heads, self.head_dim))

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention projections, each ``[..., T, heads, head_dim]``."""
        if self.fused:
            return tuple(self._heads(t) for t in self.qkv_proj(x).chunk(3, dim=-1))
        return self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))

    def project_kv(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of ``[B, S, kv_size]`` states as ``[B, heads, S, head_dim]`` (cross-attention, computed once)."""
        if self.fused:
            k, v = self.kv_proj(states).chunk(2, dim=-1)
        else:
            k, v = self.k_proj(states), self.v_proj(states)
        return self._heads(k).transpose(1, 2), self._heads(v).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        kv_states: torch.Tensor | None = None,
        static_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | StaticKVCache | None = None,
        packed: PackedBatch | None = None,
    ) -> torch.Tensor:
        """Attend; ``x`` is ``[B, T, H]`` (or ``[N, H]`` packed). ``mask`` is SDPA-ready (see build_attention_mask)."""
        dropout = self.dropout if self.training else 0.0
        if self.cross:
            q = self._heads(self.q_proj(x)).transpose(1, 2)
            k, v = static_kv if static_kv is not None else self.project_kv(kv_states)
            if q.shape[0] != k.shape[0]:
                out = grouped_cross_attention(q, k, v, mask, dropout)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
            return self.out_proj(out.transpose(1, 2).flatten(-2))
        q, k, v = self.project_qkv(x)
        if packed is not None:
            return self.out_proj(self._packed_attention(q, k, v, packed, mask, dropout).flatten(-2))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache is not None:
            k, v = cache.append(k, v)
            if cache.static:  # the whole buffer comes back: mask what is not written yet (causality included)
                visible = cache.visible(q.shape[2])
                mask = visible if mask is None else mask & visible
                is_causal = False
        # A single query needs no causal mask (it sees every cached position). Testing that first keeps the flag a
        # plain bool under torch.compile, where the cache length is symbolic and SDPA refuses a symbolic flag.
        causal_flag = is_causal and mask is None and q.shape[2] != 1 and q.shape[2] == k.shape[2]
        if is_causal and mask is None and not causal_flag and q.shape[2] > 1:
            mask = causal_mask(q.shape[2], k.shape[2], q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal_flag)
        return self.out_proj(out.transpose(1, 2).flatten(-2))

    def _packed_attention(self, q, k, v, packed: PackedBatch, mask, dropout) -> torch.Tensor:
        """Attention over packed ``[N, heads, head_dim]`` tokens: varlen flash on CUDA, else re-pad around SDPA."""
        if (
            _varlen_attn is not None
            and q.is_cuda
            and q.dtype in (torch.float16, torch.bfloat16)
            and mask is None
            and dropout == 0.0
        ):
            cu, n = packed.cu_seqlens, packed.max_seqlen
            return _varlen_attn(q, k, v, cu, cu, n, n)
        qp, kp, vp = (packed.unpack(t).transpose(1, 2) for t in (q, k, v))
        if mask is None:
            mask = packed.key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, dropout_p=dropout)
        return packed.pack(out.transpose(1, 2))
