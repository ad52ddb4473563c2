"""Task heads shared by the encoder families."""

from __future__ import annotations

import torch
from torch import nn

from alicemind.core.layers.activations import get_activation


class Pooler(nn.Module):
    """``dense`` + tanh on the first token ([CLS])."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class MaskedLMHead(nn.Module):
    """``transform`` (dense, activation, norm) then a vocabulary projection whose weight is tied to the word
    embeddings (``decoder.weight``) plus its own ``bias``."""

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        *,
        embedding_size: int | None = None,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-12,
    ):
        super().__init__()
        emb = embedding_size or hidden_size
        self.dense = nn.Linear(hidden_size, emb)
        self.act = get_activation(activation)
        self.norm = nn.LayerNorm(emb, eps=layer_norm_eps)
        self.decoder = nn.Linear(emb, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def tie_to(self, word_embeddings: nn.Embedding) -> None:
        """Share the output projection with the input embedding table."""
        self.decoder.weight = word_embeddings.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(hidden)))) + self.bias


class ClassificationHead(nn.Module):
    """Dropout + linear over a pooled vector; with several tasks, one ``classifiers.{k}`` linear per task."""

    def __init__(self, hidden_size: int, num_labels: int | list[int], dropout: float = 0.1):
        super().__init__()
        sizes = [num_labels] if isinstance(num_labels, int) else list(num_labels)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"num_labels must be positive, got {num_labels}")
        self.dropout = nn.Dropout(dropout)
        self.classifiers = nn.ModuleList(nn.Linear(hidden_size, n) for n in sizes)

    @property
    def num_tasks(self) -> int:
        return len(self.classifiers)

    def forward(self, pooled: torch.Tensor, task_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Logits of every task for every row (rows are routed to their task by the loss)."""
        x = self.dropout(pooled)
        return [clf(x) for clf in self.classifiers]


class SpanQAHead(nn.Module):
    """Start/end logits for extractive QA (``qa_outputs``: hidden -> 2)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.qa_outputs(hidden).unbind(-1)
        return start, end
