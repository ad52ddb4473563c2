"""Tiny models built in the tests (no downloads); helpers are fixtures so the tests run under --import-mode=importlib."""

from __future__ import annotations

import pytest
import torch


def _tiny_bert_config(**overrides):
    from transformers import BertConfig

    values = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    values.update(overrides)
    return BertConfig(**values)


def _tiny_gpt2_config(**overrides):
    from transformers import GPT2Config

    values = dict(vocab_size=120, n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                  attn_pdrop=0.0)  # fmt: skip
    values.update(overrides)
    return GPT2Config(**values)


def _randomize_pst(model, seed: int = 0) -> None:
    """Give V and B non-zero values so that U V and A B matter (they start at zero)."""
    from alicemind.pst import sparse_layers

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in sparse_layers(model):
            for p in (layer.weight_V, layer.mask_scores_B, layer.mask_scores_R, layer.mask_scores_C):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.fixture
def tiny_bert_config():
    return _tiny_bert_config


@pytest.fixture
def tiny_gpt2_config():
    return _tiny_gpt2_config


@pytest.fixture
def randomize_pst():
    return _randomize_pst


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
