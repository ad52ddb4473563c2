"""``palm generate --int8-weights``: every linear and the tied output projection run in int8, the embedding lookup
keeps its fp32 table, logits stay within 2% of fp32, and greedy decoding runs the int8 maps on every step."""

from __future__ import annotations

import torch

from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.ops.int8 import Int8Linear, quantize_linear_weights


def test_int8_quantises_the_tied_projection_and_keeps_logits_close(arch, make_model, make_source):
    model = make_model(arch).eval()
    ids, mask = make_source(model)
    states = torch.randn(ids.shape[0], 3, model.config.decoder_hidden_size)
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    with torch.no_grad():
        want = model.logits(states)
        assert quantize_linear_weights(model) == linears + 1
        got = model.logits(states)
    projection = model.int8_output_projection
    assert isinstance(projection, Int8Linear) and projection.out_features == model.config.vocab_size
    assert model.output_embeddings.weight.dtype == torch.float32
    real = model.config.real_vocab_size or model.config.vocab_size
    assert 0 < float((got[..., :real] - want[..., :real]).norm() / want[..., :real].norm()) < 0.02
    assert bool(torch.isinf(got[..., real:]).all())  # ids beyond the real vocabulary stay impossible

    calls = []
    projection.register_forward_hook(lambda *_: calls.append(1))
    config = GenerationConfig(**{**model.generation_defaults(), "max_new_tokens": 5, "eos_token_id": None})
    with torch.no_grad():
        out = generate(model, ids, mask, config)
    assert out.sequences.shape[1] >= 6 and len(calls) == 5  # no EOS: exactly 5 steps, each through int8
