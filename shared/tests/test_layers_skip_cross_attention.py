"""``skip_cross_attention``: a block built with cross-attention runs as self-attention + FFN only (VECO's plug-in)."""

from __future__ import annotations

import torch

from alicemind.core.layers import BlockSpec, TransformerStack


def _stacks():
    torch.manual_seed(0)
    spec = dict(hidden_size=16, num_heads=2, intermediate_size=32, dropout=0.0, attention_dropout=0.0)
    plain = TransformerStack(BlockSpec(**spec), 2).eval()
    plugged = TransformerStack(BlockSpec(**spec, cross_attention=True), 2).eval()
    # Same self-attention and FFN weights; the plugged stack has cross-attention on top.
    missing, unexpected = plugged.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".cross_attn" in k for k in missing)
    return plain, plugged


def test_skipped_cross_attention_equals_the_plain_stack():
    plain, plugged = _stacks()
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    expected = plain(x, padding_mask=mask).last_hidden_state
    got = plugged(x, padding_mask=mask, skip_cross_attention=True).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-6)


def test_cross_attention_still_runs_by_default_and_changes_the_output():
    plain, plugged = _stacks()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    with_cross = plugged(x, encoder_states=memory).last_hidden_state
    assert (with_cross - plain(x).last_hidden_state).abs().max() > 1e-3
    try:
        plugged(x)
    except ValueError as err:
        assert "cross-attention" in str(err)
    else:
        raise AssertionError("a plugged block without encoder states and without skip_cross_attention must refuse")
