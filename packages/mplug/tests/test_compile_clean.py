"""mPLUG traces whole under torch.compile(fullgraph=True): each task model's eval outputs and its training loss with
the backward (captioning, VQA, retrieval ITC + ITM with its queues and momentum copies, pre-training's four
objectives, grounding), the text encoder padded and padding-free, and the decode steps of caption / VQA generation
(one graph for the prompt, one for all later steps). Several ragged batches of one shape compile one graph."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from mplug_testing import tiny_config, tokenizer

from alicemind.core.ops.compiling import trace_calls
from alicemind.mplug import (
    MPlugConfig,
    MPlugForCaption,
    MPlugForGrounding,
    MPlugForPreTraining,
    MPlugForRetrieval,
    MPlugForVQA,
)
from alicemind.mplug.modules import ConditionedDecoder, DecoderSteps, sequence_loss

QUIET = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
B, T = 3, 8


def _batches(vocab: int = 120):
    """Three batches of one shape (pixels [3, 3, 32, 32], text [3, 8]): two ragged, then a full one."""
    out = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        pixels = torch.randn(B, 3, 32, 32, generator=g)
        ids = torch.randint(5, vocab, (B, T), generator=g)
        ids[:, 0] = 1  # [CLS]
        mask = torch.ones_like(ids)
        if seed < 2:
            mask[seed, 5 + seed :] = 0
            mask[2, 6:] = 0
        out.append((pixels, ids.masked_fill(mask == 0, 0), mask))
    return out


def _close(got, want):
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _eval_traces_once(fn, calls):
    with torch.no_grad():
        trace = trace_calls(fn, calls)
        eager = [fn(*c) for c in calls]
    assert trace.graphs == 1
    for got, want in zip(trace.outputs, eager, strict=True):
        _close(got, want)


def _compile_stepwise(loss, calls) -> tuple[int, list[torch.Tensor]]:
    """Graphs compiled and losses when each call's backward runs before the next call, as in training.

    ITC clamps the temperature in place at every step (as released), so the graph of one step's loss is invalid
    once the next step ran: ``trace_calls``, which runs every call first, cannot train these models."""
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    compiled = torch.compile(loss, backend=counter, fullgraph=True)
    losses = []
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):  # the ITM negatives' nonzero()
        for args in calls:
            losses.append(compiled(*args))
            losses[-1].backward()
    torch._dynamo.reset()
    return counter.frame_count, losses


def _training_traces_once(model, loss, calls, *, stepwise: bool = False):
    """The loss compiled (aot_eager, so the backward is traced too) and eager from the same state and RNG seed:
    one graph, equal losses, equal gradients, and equal state afterwards (queues, momentum copies, temperature).
    ``stepwise``: a backward after each call (see :func:`_compile_stepwise`), else one over the summed losses."""
    start = copy.deepcopy(model.state_dict())
    torch.manual_seed(7)
    if stepwise:
        graphs, outputs = _compile_stepwise(loss, calls)
    else:
        trace = trace_calls(loss, calls, backend="aot_eager")
        graphs, outputs = trace.graphs, trace.outputs
        sum(outputs).backward()
    compiled_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    compiled_state = copy.deepcopy(model.state_dict())
    model.zero_grad(set_to_none=True)
    model.load_state_dict(start)
    torch.manual_seed(7)
    eager = []
    for args in calls:
        eager.append(loss(*args))
        if stepwise:
            eager[-1].backward()
    if not stepwise:
        sum(eager).backward()
    assert graphs == 1
    _close(torch.stack([o.detach() for o in outputs]), torch.stack([e.detach() for e in eager]))
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert compiled_grads.keys() == grads.keys() and len(grads) > 10
    for name, want in grads.items():
        torch.testing.assert_close(compiled_grads[name], want, atol=1e-5, rtol=1e-4, msg=name)
    for name, want in model.state_dict().items():
        torch.testing.assert_close(compiled_state[name], want, atol=1e-5, rtol=1e-5, msg=name)


def test_padding_free_text_encoder_equals_padded_and_is_saved(tmp_path):
    assert MPlugConfig().padding_free is None  # packed only in eager training steps
    torch.manual_seed(0)
    padded = MPlugForVQA(tiny_config()).eval()
    packed = MPlugForVQA(tiny_config(padding_free=True)).eval()
    packed.load_state_dict(padded.state_dict())
    assert packed.text_encoder.encoder.padding_free and not packed.text_decoder.bert.encoder.padding_free
    with torch.no_grad():
        for pixels, ids, mask in _batches():
            real = mask.bool()
            _close(packed.encode_text(ids, mask)[real], padded.encode_text(ids, mask)[real])
            (got, got_mask), (want, want_mask) = packed.fuse(pixels, ids, mask), padded.fuse(pixels, ids, mask)
            assert torch.equal(got_mask, want_mask)
            _close(got[got_mask.bool()], want[want_mask.bool()])
    packed.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["padding_free"] is True
    assert MPlugForVQA.from_pretrained(tmp_path).text_encoder.encoder.padding_free


def test_caption_eval_and_training_loss_trace_once():
    torch.manual_seed(0)
    model = MPlugForCaption(tiny_config(**QUIET)).eval()
    calls = _batches()
    _eval_traces_once(lambda p, i, m: model(p, i, m).logits, calls)
    model.train()
    _training_traces_once(model, lambda p, i, m: model(p, i, m).loss, calls)


@pytest.mark.parametrize("padding_free", [False, True])
def test_vqa_eval_and_training_loss_trace_once(padding_free):
    torch.manual_seed(0)
    model = MPlugForVQA(tiny_config(padding_free=padding_free, **QUIET)).eval()
    answers = torch.randint(5, 120, (5, 4), generator=torch.Generator().manual_seed(9))
    answers[:, 0] = 1
    answer_mask = torch.ones_like(answers)
    answer_mask[1, 3:] = 0
    weights = torch.tensor([1.0, 0.5, 0.5, 1.0, 1.0])
    calls = _batches()
    _eval_traces_once(lambda p, i, m: model.fuse(p, i, m)[0], calls)
    _eval_traces_once(lambda p, i, m: model.rank_answers(p, i, m, answers, answer_mask), calls)
    model.train()

    def loss(p, i, m):  # 5 answer rows for 3 questions: 1, 2 and 2 answers
        return model(p, i, m, answers, answer_mask, weights, [1, 2, 2]).loss

    _training_traces_once(model, loss, calls)


@pytest.mark.parametrize("padding_free", [False, True])
def test_retrieval_itc_itm_eval_and_training_loss_trace_once(padding_free):
    torch.manual_seed(0)
    model = MPlugForRetrieval(tiny_config(padding_free=padding_free, **QUIET)).eval()
    calls = _batches()

    def scores(p, i, m):  # ITC similarity, then ITM re-ranking of each pair
        image, image_mask = model.encode_image(p)
        text = model.encode_text(i, m)
        similarity = model.image_features(image) @ model.text_features(text).T
        return torch.cat([similarity, model.itm_logits(image, image_mask, text, m)], 1)

    _eval_traces_once(scores, calls)
    model.train()
    # Each step updates the momentum copies and writes the queues in place: both are compared after the runs.
    _training_traces_once(model, lambda p, i, m: model(p, i, m, torch.arange(B)).loss, calls, stepwise=True)


@pytest.mark.parametrize("padding_free", [False, True])
def test_pretraining_losses_trace_once_with_their_backward(padding_free):
    torch.manual_seed(0)
    model = MPlugForPreTraining(tiny_config(padding_free=padding_free, **QUIET)).train()
    # The PrefixLM split is a tensor argument (drawn outside the step), 2, 3 and 4 here: it varies, the graph not.
    calls = [(*batch, torch.tensor(split)) for batch, split in zip(_batches(), (2, 3, 4), strict=True)]

    def loss(p, i, m, split):
        return model(p, i, m, torch.arange(B), prefix_split=split).loss

    _training_traces_once(model, loss, calls, stepwise=True)


def test_pretraining_without_a_split_breaks_the_graph_on_drawing_it():
    """Drawing the split in the step reads the row lengths on the host: the documented reason to pass it in."""
    model = MPlugForPreTraining(tiny_config(**QUIET)).train()
    with pytest.raises(torch._dynamo.exc.UserError, match="data-dependent expression"):
        _compile_stepwise(lambda p, i, m: model(p, i, m, torch.arange(B), tasks=("prefix",)).loss, _batches()[:1])


def test_static_prefix_loss_equals_the_loss_on_sliced_rows():
    """PrefixLM keeps the batch width (the split is a value, not a shape); the loss is the one on sliced rows, and
    a drawn split is the one ``torch.randint`` gives."""
    torch.manual_seed(0)
    model = MPlugForPreTraining(tiny_config(**QUIET)).eval()
    with torch.no_grad():
        for pixels, ids, mask in _batches():
            image, image_mask = model.encode_image(pixels)
            shortest = int(mask.sum(1).min())
            split = int(torch.randint(2, shortest - 1, (1,), generator=torch.Generator().manual_seed(4)))
            drawn = model.prefix_loss(image, image_mask, ids, mask, torch.Generator().manual_seed(4))
            given = model.prefix_loss(image, image_mask, ids, mask, split=torch.tensor(split))  # the static path
            text = model.encode_text(ids[:, :split], mask[:, :split])
            image_states, text = model.fusion_encoder(text, mask[:, :split], image, image_mask)
            states, states_mask = torch.cat([image_states, text], 1), torch.cat([image_mask, mask[:, :split]], 1)
            target = torch.cat([ids[:, :1], ids[:, split:]], 1)
            target_mask = torch.cat([mask[:, :1], mask[:, split:]], 1)
            logits = model.text_decoder(target, target_mask, states, states_mask)
            want = sequence_loss(logits, target, target_mask).sum() / target_mask[:, 1:].sum()
            _close(given, want)
            _close(drawn, want)
        short = torch.tensor([[1, 7, 2, 0, 0, 0, 0, 0]] + [[1, 7, 8, 9, 2, 0, 0, 0]] * 2)
        assert model.prefix_loss(image, image_mask, short, (short > 0).long()).item() == 0.0  # nothing to split


@pytest.mark.parametrize("padding_free", [False, True])
def test_grounding_eval_and_weighted_training_loss_trace_once(padding_free):
    torch.manual_seed(0)
    tok = tokenizer(with_box_tokens=True)
    model = MPlugForGrounding(tiny_config(vocab_size=tok.vocab_size, padding_free=padding_free, **QUIET)).eval()
    bins = tok.convert_tokens_to_ids([f"[unused{i}]" for i in range(340, 677)])
    model.set_box_vocabulary(tok.convert_tokens_to_ids("[unused339]"), bins)
    calls = []
    for seed, (pixels, ids, mask) in enumerate(_batches()):
        g = torch.Generator().manual_seed(seed)
        box_bins = torch.randint(0, len(bins), (B, 4), generator=g)
        targets = torch.rand(B, 4, generator=g) * 0.5 + 0.25
        calls.append((pixels, ids, mask, torch.tensor(bins)[box_bins], targets))
    _eval_traces_once(lambda p, i, m, box, _: model(p, i, m, box).logits, calls)
    model.train()
    _training_traces_once(model, lambda p, i, m, box, target: model(p, i, m, box, target).loss, calls)


@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_decode_steps_trace_the_prompt_once_and_all_later_steps_once(task):
    torch.manual_seed(0)
    pixels, ids, mask = _batches()[0]
    with torch.no_grad():
        if task == "caption":  # the decoder reads the image states only
            model = MPlugForCaption(tiny_config()).eval()
            states, states_mask = model.encode_image(pixels)
        else:  # the decoder reads the fused [image; question] with the question's padding
            model = MPlugForVQA(tiny_config()).eval()
            states, states_mask = model.fuse(pixels, ids, mask)
        adapter = ConditionedDecoder(DecoderSteps(model.text_decoder), states, states_mask)
        steps = [torch.full((B, 2), 1)] + [torch.full((B, 1), 10 + i) for i in range(5)]
        cache = adapter.init_decoder_cache(states, states_mask, 10)
        eager = [adapter.decode_step(tokens, cache) for tokens in steps]
        cache = adapter.init_decoder_cache(states, states_mask, 10)
        trace = trace_calls(adapter.decode_step, [(tokens, cache) for tokens in steps])
        assert trace.graphs == 2 and cache.length == 7
        for got, want in zip(trace.outputs, eager, strict=True):
            _close(got, want)
        # The cached steps are the teacher-forced decoder: the last step's logits equal the full pass's.
        tokens = torch.cat(steps, 1)
        full = model.text_decoder(tokens, torch.ones_like(tokens), states, states_mask)
        _close(F.log_softmax(trace.outputs[-1][:, -1], -1), F.log_softmax(full[:, -1], -1))


def test_static_cache_decode_steps_are_one_graph_equal_to_the_dynamic_cache():
    torch.manual_seed(0)
    pixels, _, _ = _batches()[0]
    model = MPlugForCaption(tiny_config()).eval()
    with torch.no_grad():
        states, states_mask = model.encode_image(pixels)
        adapter = ConditionedDecoder(DecoderSteps(model.text_decoder), states, states_mask)
        steps = [torch.full((B, 1), 10 + i) for i in range(6)]
        cache = adapter.init_decoder_cache(states, states_mask, 8)
        dynamic = [adapter.decode_step(tokens, cache) for tokens in steps]
        cache = adapter.init_decoder_cache(states, states_mask, 8, static=True)
        trace = trace_calls(adapter.decode_step, [(tokens, cache) for tokens in steps])
    assert trace.graphs == 1 and int(cache.position) == 6
    for got, want in zip(trace.outputs, dynamic, strict=True):
        _close(got, want)
