"""TextEmbeddings(projection_bias=False): a factorised table projected by a bare matmul (LatticeBERT)."""

from __future__ import annotations

import torch

from alicemind.core.layers import TextEmbeddings


def test_factorised_projection_without_bias():
    torch.manual_seed(0)
    emb = TextEmbeddings(10, 8, max_positions=0, embedding_size=4, projection_bias=False, layer_norm=False, dropout=0.0)
    assert emb.word_projection.bias is None
    ids = torch.tensor([[1, 2, 3]])
    want = emb.word_embeddings.weight[ids] @ emb.word_projection.weight.T + emb.token_type_embeddings.weight[0]
    assert torch.allclose(emb(ids), want, atol=1e-6)


def test_default_keeps_the_projection_bias():
    emb = TextEmbeddings(10, 8, embedding_size=4)
    assert emb.word_projection.bias is not None and emb.word_projection.bias.shape == (8,)
