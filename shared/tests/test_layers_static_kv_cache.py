"""StaticKVCache: a decoder stack over fixed-size buffers written at a tensor position gives the growing cache's
outputs, reorders rows in place, and the engine picks it only where the model offers it."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.layers import BlockSpec, StaticKVCache, TransformerStack
from alicemind.core.ops.inference import InferenceModel


def _decoder() -> TransformerStack:
    torch.manual_seed(0)
    spec = BlockSpec(hidden_size=32, num_heads=4, intermediate_size=64, norm_first=True, dropout=0.0,
                     attention_dropout=0.0, fused_qkv=True, cross_attention=True)  # fmt: skip
    return TransformerStack(spec, 2).eval().double()


def test_static_cache_steps_equal_the_growing_cache_across_a_reorder():
    stack = _decoder()
    g = torch.Generator().manual_seed(1)
    enc = torch.randn(3, 5, 32, generator=g, dtype=torch.float64)
    enc_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]).bool()
    position = torch.zeros(1, dtype=torch.long)
    grow = stack.init_caches(3, 2, enc)
    static = stack.init_caches(3, 16, enc, position=position)
    steps = [torch.randn(3, n, 32, generator=g, dtype=torch.float64) for n in (3, 1, 1, 1)]
    with torch.no_grad():
        for i, x in enumerate(steps):
            if i == 2:  # a beam-like reorder within the same row count
                index = torch.tensor([2, 0, 0])
                for caches in (grow, static):
                    for layer in caches:
                        layer.index_select(index)
                enc, enc_mask = enc[index], enc_mask[index]
            want = stack(x, causal=True, encoder_padding_mask=enc_mask, caches=grow).last_hidden_state
            got = stack(x, causal=True, encoder_padding_mask=enc_mask, caches=static).last_hidden_state
            position.add_(x.shape[1])
            torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    assert all(layer.self_kv.static for layer in static) and not grow[0].self_kv.static


def test_static_cache_reorders_between_two_buffers_and_masks_unwritten_positions():
    position = torch.tensor([2])
    cache = StaticKVCache.empty(3, 2, 4, 6, position, dtype=torch.float32, device="cpu")
    first = {cache.key.data_ptr(), cache.value.data_ptr()}
    cache.index_select(torch.tensor([1, 1, 0]))
    cache.index_select(torch.tensor([0, 2, 1]))
    assert {cache.key.data_ptr(), cache.value.data_ptr()} == first  # swapped back: no new buffer per step
    cache.index_select(torch.tensor([0, 0, 1, 1, 2, 2]))  # expanding to beams allocates once
    assert cache.key.shape[0] == 6
    visible = cache.visible(2)[0, 0]
    assert visible.tolist() == [[True, True, True, False, False, False], [True, True, True, True, False, False]]


class _NoStatic:
    """A protocol model whose cache cannot be static (its init_decoder_cache takes no ``static``)."""

    prefers_static_cache = True

    def encode(self, input_ids, attention_mask):
        return torch.zeros(input_ids.shape[0], 1, 4)

    def init_decoder_cache(self, encoder_hidden, encoder_mask, max_length):
        return {"rows": encoder_hidden.shape[0]}

    def decode_step(self, decoder_input_ids, cache):
        logits = torch.zeros(decoder_input_ids.shape[0], decoder_input_ids.shape[1], 6)
        logits[..., 3] = 1.0
        return logits

    def reorder_cache(self, cache, index):
        return cache


def test_the_engine_uses_a_static_cache_only_where_the_model_has_one():
    ids = torch.ones(2, 3, dtype=torch.long)
    config = GenerationConfig(decoder_start_token_id=1, max_new_tokens=2)
    out = generate(_NoStatic(), ids, None, config)  # prefers it, cannot: the growing cache
    assert out.sequences.tolist() == [[1, 3, 3], [1, 3, 3]]
    with pytest.raises(TypeError, match="no static"):
        generate(_NoStatic(), ids, None, config, static_cache=True)
    assert InferenceModel.prefers_static_cache
