"""``palm generate --int8-weights``: every linear and the tied output projection run in int8, the embedding lookup
keeps its fp32 table, logits stay within 2% of fp32, and greedy decoding runs the int8 maps on every step."""

from __future__ import annotations

import torch
from torch._dynamo.utils import counters

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


def test_int8_decoding_compiles_whole_with_the_eager_int8_tokens(arch, make_model, make_source):
    """``--int8-weights --compile``: every int8 map is an opaque op inside the compiled encode and decode steps
    (no graph break), and greedy and beam search give the eager int8 tokens."""
    from alicemind.core.ops import optimize_for_inference

    model = make_model(arch).eval()
    ids, mask = make_source(model)
    quantize_linear_weights(model)
    config = {**model.generation_defaults(), "max_new_tokens": 6, "eos_token_id": None}
    reports: list[str] = []
    compiled = optimize_for_inference(model, backend="aot_eager", report=reports.append)
    counters.clear()
    with torch.no_grad():
        for beams in (1, 3):
            want = generate(model, ids, mask, GenerationConfig(**config, num_beams=beams)).sequences
            got = generate(compiled, ids, mask, GenerationConfig(**config, num_beams=beams)).sequences
            assert torch.equal(got, want), beams
    assert not counters["graph_break"], dict(counters["graph_break"])
    # One graph per method and row count: encode, the static cache's first step, then the later steps.
    assert sum("decode_step" in r for r in reports) <= 3 and any("encode" in r for r in reports)
