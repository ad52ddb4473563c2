"""The static KV cache path (fixed-size buffers written at a tensor position): the same tokens and scores as the
growing cache for greedy, seeded sampling and beam search, and one traced graph for every step after the prompt."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.ops.compiling import trace_calls


def _both(model, ids, mask, config, seed: int | None = None):
    """(dynamic, static) outputs of the same generate call; sampling draws from a generator seeded ``seed``."""
    out = []
    for static in (False, True):
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        out.append(generate(model, ids, mask, config, generator=generator, static_cache=static))
    return out


def _assert_same(dynamic, static):
    assert torch.equal(dynamic.sequences, static.sequences)
    assert torch.equal(dynamic.lengths, static.lengths)
    torch.testing.assert_close(dynamic.scores, static.scores, atol=1e-9, rtol=1e-9)
    if dynamic.sequence_scores is not None:
        torch.testing.assert_close(dynamic.sequence_scores, static.sequence_scores, atol=1e-9, rtol=1e-9)


def _defaults(model, **overrides):
    return GenerationConfig(**{**model.generation_defaults(), "max_new_tokens": 9, **overrides})


def _staggered_eos(model, ids, mask, seed: int | None = None, **overrides) -> int:
    """A token that, made EOS, ends the rows at different steps (so the static path's frozen rows matter)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    sequences = generate(model, ids, mask, _defaults(model, **overrides), generator=generator).sequences[:, 1:]
    for token in sequences.flatten().tolist():
        ends = [(row == token).nonzero()[0].item() if (row == token).any() else len(row) for row in sequences]
        if len(set(ends)) > 1:
            return token
    raise AssertionError("no token ends the rows apart")


def test_static_cache_steps_match_the_growing_cache(arch, make_model, make_source):
    model = make_model(arch).double()
    ids, mask = make_source(model)
    prompt = torch.full((ids.shape[0], 2), model.config.start_token_id)
    steps = [prompt] + [torch.full((ids.shape[0], 1), 7 + i) for i in range(4)]
    with torch.no_grad():
        hidden = model.encode(ids, mask)
        grow = model.init_decoder_cache(hidden, mask, 6)
        static = model.init_decoder_cache(model.encode(ids, mask), mask, 16, static=True)
        for tokens in steps:
            torch.testing.assert_close(
                model.decode_step(tokens, static), model.decode_step(tokens, grow), atol=1e-10, rtol=1e-10
            )
    assert int(static.position) == 6


def test_static_greedy_equals_dynamic_with_rows_ending_early(arch, make_model, make_source):
    model = make_model(arch).double()
    ids, mask = make_source(model)
    # n-gram blocking keeps the tiny models from repeating one token, and exercises the history
    eos = _staggered_eos(model, ids, mask, no_repeat_ngram_size=2)
    config = _defaults(model, eos_token_id=eos, pad_token_id=0, no_repeat_ngram_size=2)
    dynamic, static = _both(model, ids, mask, config)
    assert dynamic.lengths.min() < dynamic.lengths.max()
    _assert_same(dynamic, static)


def test_static_sampling_draws_the_same_tokens_for_a_seed(make_model, make_source):
    model = make_model("sofa-zh").double()
    ids, mask = make_source(model)
    eos = _staggered_eos(model, ids, mask, seed=5, do_sample=True, top_k=20, num_return_sequences=2)
    config = _defaults(model, do_sample=True, top_k=20, num_return_sequences=2, eos_token_id=eos)
    dynamic, static = _both(model, ids, mask, config, seed=5)
    assert dynamic.lengths.min() < dynamic.lengths.max()
    _assert_same(dynamic, static)


@pytest.mark.parametrize(
    "arch, stopping", [("sofa-zh", "top_beam"), ("sofa-zh", "num_beams"), ("presumm-en", "num_beams"),
                       ("presumm-en-pgen", "top_beam")]
)  # fmt: skip
def test_static_beam_search_equals_dynamic(arch, stopping, make_model, make_source):
    model = make_model(arch).double()
    ids, mask = make_source(model)
    eos = _staggered_eos(model, ids, mask, no_repeat_ngram_size=2)
    config = _defaults(model, num_beams=3, num_return_sequences=2, eos_token_id=eos, beam_stopping=stopping,
                       no_repeat_ngram_size=2)  # fmt: skip
    dynamic, static = _both(model, ids, mask, config)
    _assert_same(dynamic, static)


@pytest.mark.parametrize("arch", ["sofa-zh", "presumm-en-pgen"])  # the plain and the copy-attention decoder
def test_static_decode_step_is_one_graph_for_every_later_step(arch, make_model, make_source):
    model = make_model(arch)
    ids, mask = make_source(model)
    rows = ids.shape[0]
    steps = [torch.full((rows, 2), model.config.start_token_id)] + [torch.full((rows, 1), 8 + i) for i in range(5)]
    with torch.no_grad():
        eager_cache = model.init_decoder_cache(model.encode(ids, mask), mask, 16, static=True)
        eager = [model.decode_step(tokens, eager_cache) for tokens in steps]
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 16, static=True)
        trace = trace_calls(model.decode_step, [(tokens, cache) for tokens in steps])
    assert trace.graphs == 2  # the two-token prompt, then one graph for all five one-token steps
    assert int(cache.position) == 7
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_static_beam_search_traces_one_step_graph_across_reorders(make_model, make_source):
    model = make_model("sofa-zh")
    ids, mask = make_source(model)
    config = _defaults(model, num_beams=2, max_new_tokens=6)
    with torch.no_grad():
        want = generate(model, ids, mask, config, static_cache=True)
        steps = []

        class Counting:  # the engine's calls go through a compiled decode step
            def __getattr__(self, name):
                return getattr(model, name)

            def decode_step(self, tokens, cache):
                steps.append((tokens.clone(), cache))
                return compiled(tokens, cache)

        graphs = []

        def counting_backend(gm, example_inputs):
            graphs.append(gm)
            return gm.forward

        torch._dynamo.reset()
        compiled = torch.compile(model.decode_step, backend=counting_backend, fullgraph=True)
        got = generate(Counting(), ids, mask, config, static_cache=True)
        torch._dynamo.reset()
    assert len(steps) == 6
    assert len(graphs) == 2  # prompt rows, then beam rows for every later step, reorders included
    assert torch.equal(got.sequences, want.sequences)


@pytest.mark.parametrize("beams", [1, 2])
def test_the_static_cache_holds_exactly_the_positions_fed_back(beams, make_model, make_source, monkeypatch):
    # 1 prompt token + 16 new: the 16th token is never fed back, so 16 positions fill the 16 bucket exactly.
    import alicemind.palm.model as palm_model

    model = make_model("sofa-zh").double()
    ids, mask = make_source(model)
    capacities = []
    real = type(model).init_decoder_cache

    def spy(self, hidden, encoder_mask, max_length, *, source_ids=None, static=False):
        capacities.append((max_length, static))
        return real(self, hidden, encoder_mask, max_length, source_ids=source_ids, static=static)

    monkeypatch.setattr(palm_model.PalmForConditionalGeneration, "init_decoder_cache", spy)
    config = _defaults(model, num_beams=beams, max_new_tokens=16, eos_token_id=None)
    dynamic, static = _both(model, ids, mask, config)
    assert capacities[-1] == (16, True) and static.sequences.shape[1] == 17
    _assert_same(dynamic, static)
