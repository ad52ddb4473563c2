"""The lattice position bias: one ``[B, heads, L, L]`` additive attention bias per forward, shared by all layers.

For query unit i and key unit j with start s and inclusive end e (models-multimodal.md 3.3, errata 2):

* absolute: ``q_i . k_j / sqrt(d_head)`` where q/k = ``query_position``/``key_position`` of
  ``[start_table[s], end_table[e]]``;
* relative: four tables indexed by ``clip(key - query, +-R) + R`` for the pairs (s_j - s_i), (s_j - e_i),
  (e_j - s_i), (e_j - e_i);
* relation: a 5-bit code, 1 (s_j >= s_i) + 2 (s_j > e_i) + 4 (e_j >= s_i) + 8 (e_j >= e_i) + 16 (same span);
* [CLS] reset: row 0 (keys 1..) becomes a per-head scalar from ``reset_theta_1``, column 0 (every row) one from
  ``reset_theta_2``; each is ``(W_q theta + b_q) . (W_k theta + b_k) / sqrt(d_head)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from alicemind.core.layers import SequenceTooLongError


class LatticePositionBias(nn.Module):
    """The start/end tables, the position projections, the relative and relation tables and the reset vectors."""

    def __init__(
        self, *, max_positions: int, embedding_size: int, hidden_size: int, num_heads: int, max_relative: int = 128
    ):
        super().__init__()
        self.num_heads, self.head_dim, self.max_relative = num_heads, hidden_size // num_heads, max_relative
        self.max_positions = max_positions
        self.start_position_embeddings = nn.Embedding(max_positions, embedding_size)
        self.end_position_embeddings = nn.Embedding(max_positions, embedding_size)
        self.query_position = nn.Linear(2 * embedding_size, hidden_size)
        self.key_position = nn.Linear(2 * embedding_size, hidden_size)
        # Order: (start, start), (start, end), (end, start), (end, end) as (key, query).
        self.relative_position_scores = nn.ModuleList(nn.Embedding(2 * max_relative + 1, num_heads) for _ in range(4))
        self.relative_type_embeddings = nn.Embedding(32, num_heads)
        self.reset_theta_1 = nn.Parameter(torch.zeros(2 * embedding_size))
        self.reset_theta_2 = nn.Parameter(torch.zeros(2 * embedding_size))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(-3, -2)

    def reset_scores(self, theta: torch.Tensor) -> torch.Tensor:
        """The per-head scalar ``[heads]`` that replaces a [CLS] row or column."""
        q = self.query_position(theta).view(self.num_heads, self.head_dim)
        k = self.key_position(theta).view(self.num_heads, self.head_dim)
        return (q * k).sum(-1) / math.sqrt(self.head_dim)

    def _check_positions(self, starts: torch.Tensor, ends: torch.Tensor) -> None:
        if bool((starts < 0).any()) or bool((ends < starts).any()):
            raise ValueError("lattice positions must satisfy 0 <= start <= end")
        top = int(ends.max()) if ends.numel() else 0
        if top >= self.max_positions:
            raise SequenceTooLongError(
                f"lattice position {top} is beyond the model's {self.max_positions} position rows; "
                "truncate the input (tokenizer truncation=True, max_length)"
            )

    def forward(self, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """``starts``/``ends`` ``[B, L]`` (inclusive ends; padding may be 0) -> bias ``[B, heads, L, L]``."""
        if starts.shape != ends.shape or starts.ndim != 2:
            raise ValueError(
                f"lattice_starts {tuple(starts.shape)} and lattice_ends {tuple(ends.shape)} must be [B, L]"
            )
        if not torch.compiler.is_compiling():  # reading the data is a host sync and a graph break in a compile
            self._check_positions(starts, ends)
        pos = torch.cat([self.start_position_embeddings(starts), self.end_position_embeddings(ends)], dim=-1)
        q, k = self._heads(self.query_position(pos)), self._heads(self.key_position(pos))
        bias = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [B, A, L, L]
        r = self.max_relative
        # Rows are queries (index i), columns keys (index j): distance = key position - query position.
        rel = 0
        for table, (key, query) in zip(self.relative_position_scores, ((starts, starts), (starts, ends),
                                                                     (ends, starts), (ends, ends))):  # fmt: skip
            distance = (key[:, None, :] - query[:, :, None]).clamp(-r, r) + r
            rel = rel + table(distance)  # [B, L, L, A]
        s_i, e_i, s_j, e_j = starts[:, :, None], ends[:, :, None], starts[:, None, :], ends[:, None, :]
        code = (
            (s_j >= s_i).long()
            + 2 * (s_j > e_i).long()
            + 4 * (e_j >= s_i).long()
            + 8 * (e_j >= e_i).long()
            + 16 * ((s_j == s_i) & (e_j == e_i)).long()
        )
        rel = rel + self.relative_type_embeddings(code)
        bias = bias + rel.permute(0, 3, 1, 2)
        # The [CLS] reset replaces the whole position bias of row 0 and column 0 (the content score is untouched).
        row = self.reset_scores(self.reset_theta_1)[None, :, None, None].to(bias.dtype)
        col = self.reset_scores(self.reset_theta_2)[None, :, None, None].to(bias.dtype)
        length = bias.shape[-1]
        bias = torch.cat([row.expand(bias.shape[0], -1, 1, length - 1), bias[:, :, 1:, 1:]], dim=2)
        return torch.cat([col.expand(bias.shape[0], -1, length, 1), bias], dim=3)
