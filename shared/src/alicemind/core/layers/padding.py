"""Padding-free helpers: pack the real tokens of a padded batch and scatter them back."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedBatch:
    """Where the real tokens of a ``[B, L]`` batch live once packed into ``[N, ...]``."""

    indices: torch.Tensor  # [N] flat positions into B*L
    cu_seqlens: torch.Tensor  # [B+1] int32 cumulative lengths (varlen kernels)
    max_seqlen: int
    batch_size: int
    seq_len: int
    key_padding_mask: torch.Tensor  # [B, L] bool, True = real token

    @classmethod
    def from_mask(cls, key_padding_mask: torch.Tensor) -> PackedBatch:
        """Build from a ``[B, L]`` mask (True or 1 = real token)."""
        mask = key_padding_mask.bool()
        lengths = mask.sum(dim=1, dtype=torch.int32)
        indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
        cu = torch.nn.functional.pad(torch.cumsum(lengths, dim=0, dtype=torch.int32), (1, 0))
        # The longest row is only a kernel-sizing hint (varlen flash on CUDA); inside torch.compile reading it is a
        # host sync and a graph break, so the padded length, a valid upper bound, stands in there.
        if torch.compiler.is_compiling():
            longest = mask.shape[1]
        else:
            longest = int(lengths.max()) if lengths.numel() else 0
        return cls(indices, cu, longest, mask.shape[0], mask.shape[1], mask)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """``[B, L, ...]`` -> ``[N, ...]`` keeping only real tokens."""
        return padded.reshape(self.batch_size * self.seq_len, *padded.shape[2:]).index_select(0, self.indices)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """``[N, ...]`` -> ``[B, L, ...]`` with zeros at padded positions."""
        out = packed.new_zeros(self.batch_size * self.seq_len, *packed.shape[1:])
        out.index_copy_(0, self.indices, packed)
        return out.reshape(self.batch_size, self.seq_len, *packed.shape[1:])
