"""A linear-chain CRF as ``tf.contrib.crf`` defines it (one ``transitions[from, to]`` matrix, no start/end scores):
the negative log-likelihood for training and Viterbi decoding."""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    """``transitions`` ``[num_tags, num_tags]``: the score of tag ``to`` following tag ``from``."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if emissions.ndim != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(f"emissions must be [B, T, {self.num_tags}], got {tuple(emissions.shape)}")
        mask = mask.bool()
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match emissions {tuple(emissions.shape[:2])}")
        if mask.shape[1] and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("the CRF mask must be a prefix of each row (real tags first, then padding)")
        return mask

    def sequence_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score ``[B]`` of the tag paths ``tags`` ``[B, T]``."""
        mask = self._check(emissions, mask)
        emit = emissions.gather(-1, tags.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        score = (emit * mask).sum(1)
        trans = self.transitions[tags[:, :-1].clamp(min=0), tags[:, 1:].clamp(min=0)]
        return score + (trans * mask[:, 1:]).sum(1)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log of the sum over all tag paths of exp(score) ``[B]`` (forward algorithm)."""
        mask = self._check(emissions, mask)
        alpha = emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + self.transitions[None] + emissions[:, t, None, :], dim=1)
            alpha = torch.where(mask[:, t, None], step, alpha)
        return torch.logsumexp(alpha, dim=-1)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood over the rows that have at least one tag."""
        emissions = emissions.float()
        rows = mask.bool()[:, 0] if mask.shape[1] else mask.new_zeros(mask.shape[0], dtype=torch.bool)
        if not bool(rows.any()):
            return emissions.sum() * 0.0
        nll = self.log_partition(emissions, mask) - self.sequence_score(emissions, tags, mask)
        return nll[rows].mean()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The highest-scoring tag path of each row (Viterbi), as many tags as the row's mask allows."""
        mask = self._check(emissions, mask)
        emissions = emissions.float()
        lengths = mask.sum(1).tolist()
        if emissions.shape[1] == 0:
            return [[] for _ in lengths]
        score, history = emissions[:, 0], []
        for t in range(1, emissions.shape[1]):
            total = score[:, :, None] + self.transitions[None]
            best, index = total.max(dim=1)
            history.append(index)
            score = torch.where(mask[:, t, None], best + emissions[:, t], score)
        paths = []
        for row, length in enumerate(lengths):
            if length == 0:
                paths.append([])
                continue
            tag = int(score[row].argmax())
            path = [tag]
            for t in range(length - 1, 0, -1):
                tag = int(history[t - 1][row, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths
