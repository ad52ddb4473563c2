"""PLUG traces whole under torch.compile(fullgraph=True), in one process: the NLG model's encoder (padded and
padding-free), its teacher-forced training loss with the backward, and every decode step (one graph for the prompt,
one for all later steps); the NLU classifier's eval logits and training loss with the backward, padded and
padding-free."""

from __future__ import annotations

import pytest
import torch
from plug_testing import tiny_config

from alicemind.core.ops.compiling import assert_training_traces_like_eager, trace_calls
from alicemind.plug import PlugForConditionalGeneration, PlugForSequenceClassification

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _sources(vocab: int):
    """Three [3, 9] batches of one bucket: two ragged (each with a different row cut short), then a full one."""
    out = []
    for seed in range(3):
        ids = torch.randint(5, vocab, (3, 9), generator=torch.Generator().manual_seed(seed))
        mask = torch.ones_like(ids)
        if seed < 2:
            mask[seed, 4 + seed :] = 0
            mask[2, 7:] = 0
        out.append((ids.masked_fill(mask == 0, 0), mask))
    return out


@pytest.mark.parametrize("padding_free", [False, True])
def test_encoder_traces_once(padding_free):
    torch.manual_seed(0)
    model = PlugForConditionalGeneration(tiny_config(padding_free=padding_free)).eval()
    calls = _sources(model.config.vocab_size)
    with torch.no_grad():
        trace = trace_calls(model.encode, calls)
        eager = [model.encode(i, m) for i, m in calls]
    assert trace.graphs == 1
    for got, want, (_, mask) in zip(trace.outputs, eager, calls, strict=True):
        torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_free", [False, True])
def test_generation_training_loss_traces_once_with_its_backward(padding_free):
    torch.manual_seed(0)
    model = PlugForConditionalGeneration(tiny_config(padding_free=padding_free, **NO_DROPOUT)).train()
    calls = []
    for seed, (ids, mask) in enumerate(_sources(model.config.vocab_size)):
        labels = torch.randint(5, model.config.vocab_size, (3, 5), generator=torch.Generator().manual_seed(seed))
        labels[0, 3:] = model.config.pad_token_id  # padded targets: PLUG's token_loss ignores them
        calls.append((ids, mask, labels))

    def loss(i, m, y):
        return model(i, attention_mask=m, labels=y).loss

    assert_training_traces_like_eager(model, loss, calls)


def test_decode_steps_trace_the_prompt_once_and_all_later_steps_once():
    torch.manual_seed(0)
    model = PlugForConditionalGeneration(tiny_config()).eval()
    ids, mask = _sources(model.config.vocab_size)[0]
    steps = [torch.full((3, 2), 101)] + [torch.full((3, 1), 110 + i) for i in range(5)]
    with torch.no_grad():
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 10)
        eager = [model.decode_step(tokens, cache) for tokens in steps]
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 10)
        trace = trace_calls(model.decode_step, [(tokens, cache) for tokens in steps])
    assert trace.graphs == 2
    assert cache.length == 7
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_free", [False, True])
def test_classifier_eval_and_training_loss_trace_once(padding_free):
    torch.manual_seed(0)
    model = PlugForSequenceClassification(tiny_config(padding_free=padding_free, **NO_DROPOUT), num_labels=3)
    calls = [(ids, mask, torch.tensor([0, 1, 2])) for ids, mask in _sources(model.config.vocab_size)]
    with torch.no_grad():
        model.eval()
        trace = trace_calls(lambda i, m, _: model(i, attention_mask=m).logits, calls)
        eager = [model(i, attention_mask=m).logits for i, m, _ in calls]
    assert trace.graphs == 1
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    model.train()
    assert_training_traces_like_eager(model, lambda i, m, y: model(i, attention_mask=m, labels=y).loss, calls)


def test_padding_free_outputs_equal_the_padded_ones_at_real_positions():
    torch.manual_seed(0)
    assert tiny_config().padding_free  # PALM's default, inherited: ragged batches are packed
    for cls, kwargs in ((PlugForSequenceClassification, {"num_labels": 3}), (PlugForConditionalGeneration, {})):
        padded = cls(tiny_config(padding_free=False), **kwargs).eval()
        packed = cls(tiny_config(padding_free=True), **kwargs).eval()
        packed.load_state_dict(padded.state_dict())
        with torch.no_grad():
            for ids, mask in _sources(padded.config.vocab_size):
                real = mask.bool()
                want, got = padded.encode(ids, mask), packed.encode(ids, mask)
                torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
                if cls is PlugForSequenceClassification:
                    want, got = padded(ids, attention_mask=mask).logits, packed(ids, attention_mask=mask).logits
                else:
                    decoder_ids = torch.full((3, 4), 101)
                    want = padded(ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
                    got = packed(ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
