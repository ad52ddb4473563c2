"""VECO traces whole under torch.compile(fullgraph=True): the NLU encoder and classifier (padded and
padding-free, eval and the training loss with its backward), the plug-in cross-attention pass, and the NLG model's
training loss and decode steps (one graph for the prompt, one for every later step)."""

from __future__ import annotations

import pytest
import torch
from veco_testing import random_batch, tiny_config

from alicemind.core.ops.compiling import trace_calls
from alicemind.veco import VecoForConditionalGeneration, VecoForSequenceClassification, VecoModel


def _calls(vocab: int):
    """Three [3, 11] batches of one bucket: ragged rows (and a different token mix each time), then a full batch."""
    calls = [random_batch(vocab, seed=seed) for seed in range(2)]
    ids, _ = random_batch(vocab, seed=2)
    ids[:, -1] = 2
    calls.append((ids.masked_fill(ids == 1, 5), torch.ones_like(ids)))
    return calls


def _compare(trace, eager):
    assert trace.graphs == 1
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_free", [False, True])
def test_classifier_eval_and_training_loss_trace_once(padding_free):
    torch.manual_seed(0)
    model = VecoForSequenceClassification(tiny_config(num_labels=3, padding_free=padding_free))
    calls = [(ids, mask, torch.tensor([0, 1, 2])) for ids, mask in _calls(model.config.vocab_size)]
    with torch.no_grad():
        model.eval()
        _compare(trace_calls(lambda i, m, _: model(i, attention_mask=m).logits, calls),
                 [model(i, attention_mask=m).logits for i, m, _ in calls])  # fmt: skip
    model.train()

    def loss(i, m, y):
        return model(i, attention_mask=m, labels=y).loss

    trace = trace_calls(loss, calls, backend="aot_eager")
    sum(trace.outputs).backward()
    compiled = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    eager = [loss(*c) for c in calls]
    sum(eager).backward()
    _compare(trace, eager)
    for got, p in zip(compiled, model.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-4)


def test_plug_in_cross_attention_pass_traces_once():
    torch.manual_seed(0)
    model = VecoModel(tiny_config(), cross_attention=True).eval()
    other = torch.randn(3, 5, model.config.hidden_size)
    other_mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 4 + [0]])

    def encode(i, m):
        return model(i, attention_mask=m, cross_states=other, cross_mask=other_mask).last_hidden_state

    calls = _calls(model.config.vocab_size)
    with torch.no_grad():
        _compare(trace_calls(encode, calls), [encode(*c) for c in calls])


def test_generation_model_loss_and_decode_steps_trace_cleanly():
    torch.manual_seed(0)
    model = VecoForConditionalGeneration(tiny_config()).eval()
    calls = [(ids, mask, ids[:, :6].clone(), ids[:, 1:7].clone()) for ids, mask in _calls(model.config.vocab_size)]
    with torch.no_grad():
        loss = lambda i, m, d, y: model(i, attention_mask=m, decoder_input_ids=d, labels=y).loss  # noqa: E731
        _compare(trace_calls(loss, calls), [loss(*c) for c in calls])
        ids, mask = calls[0][:2]
        steps = [torch.full((3, 2), 9)] + [torch.full((3, 1), 10 + i) for i in range(4)]
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 10)
        eager = [model.decode_step(tokens, cache) for tokens in steps]
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 10)
        trace = trace_calls(model.decode_step, [(tokens, cache) for tokens in steps])
    assert trace.graphs == 2 and cache.length == 6
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
