"""PALM traces whole under torch.compile(fullgraph=True): the encoder (padded and padding-free), the teacher-forced
training loss with its backward, and every decode step (one graph for the prompt, one for all later steps)."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.ops.compiling import trace_calls

ARCHS = ["sofa-zh", "presumm-en", "presumm-en-pgen"]


def _sources(vocab: int):
    """Three [2, 7] source batches of one bucket: two ragged, then a full one."""
    out = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(5, vocab, (2, 7), generator=g)
        mask = torch.ones_like(ids)
        if seed < 2:
            mask[seed, 3 + seed :] = 0
        out.append((ids, mask))
    return out


@pytest.mark.parametrize("padding_free", [False, True])
@pytest.mark.parametrize("arch", ARCHS[:2])
def test_encoder_traces_once(arch, padding_free, make_model):
    model = make_model(arch, padding_free=padding_free)
    calls = _sources(model.config.vocab_size)
    with torch.no_grad():
        trace = trace_calls(model.encode, calls)
        eager = [model.encode(i, m) for i, m in calls]
    assert trace.graphs == 1
    for got, want, (_, mask) in zip(trace.outputs, eager, calls, strict=True):
        torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_training_loss_traces_once_with_its_backward(arch, make_model):
    model = make_model(arch, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, dec_dropout=0.0).train()
    calls = []
    for seed, (ids, mask) in enumerate(_sources(model.config.vocab_size)):
        labels = torch.randint(5, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(seed))
        labels[0, 3:] = -100
        calls.append((ids, mask, labels))

    def loss(i, m, y):
        return model(i, attention_mask=m, labels=y).loss

    trace = trace_calls(loss, calls, backend="aot_eager")
    sum(trace.outputs).backward()
    compiled = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    eager = [loss(*c) for c in calls]
    sum(eager).backward()
    assert trace.graphs == 1
    torch.testing.assert_close(torch.stack(trace.outputs), torch.stack(eager), atol=1e-5, rtol=1e-5)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == len(compiled)
    for got, want in zip(compiled, grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_decode_steps_trace_the_prompt_once_and_all_later_steps_once(arch, make_model):
    model = make_model(arch)
    ids, mask = _sources(model.config.vocab_size)[0]
    steps = [torch.full((2, 3), 7)] + [torch.full((2, 1), 8 + i) for i in range(5)]

    def run(step_fn):
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 12)
        return [step_fn(tokens, cache) for tokens in steps], cache

    with torch.no_grad():
        eager, _ = run(model.decode_step)
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 12)
        trace = trace_calls(model.decode_step, [(tokens, cache) for tokens in steps])
    assert trace.graphs == 2
    assert cache.length == 8
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
