"""Tiny models and data shared by the ChildTuning tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyEncoder(nn.Module):
    """A BERT-shaped toy: names mirror HF (``embeddings.LayerNorm``, ``encoder.layer.N``, ``classifier``)."""

    def __init__(self, vocab: int = 20, hidden: int = 8, layers: int = 2, labels: int = 3, dropout: float = 0.1):
        super().__init__()
        self.embeddings = nn.ModuleDict({"word": nn.Embedding(vocab, hidden), "LayerNorm": nn.LayerNorm(hidden)})
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        h = self.embeddings["LayerNorm"](self.embeddings["word"](input_ids))
        for lin in self.encoder.layer:
            h = torch.tanh(lin(self.dropout(h)))
        logits = self.classifier(h.mean(dim=1))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels) * 50.0  # large grads: the per-tensor clip acts
        return out


def make_batches(n_batches: int = 4, batch: int = 6, seq: int = 5, vocab: int = 20, labels: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(0, vocab, (batch, seq), generator=gen),
            "labels": torch.randint(0, labels, (batch,), generator=gen),
        }
        for _ in range(n_batches)
    ]


@pytest.fixture
def tiny_model() -> TinyEncoder:
    torch.manual_seed(0)
    return TinyEncoder()


@pytest.fixture
def batches() -> list[dict[str, torch.Tensor]]:
    return make_batches()


@pytest.fixture
def model_cls() -> type[TinyEncoder]:
    return TinyEncoder


@pytest.fixture
def batch_factory():
    return make_batches
