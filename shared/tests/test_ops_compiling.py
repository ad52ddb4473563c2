"""Core layers trace whole under torch.compile(fullgraph=True), once per shape bucket, and give eager's outputs."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.layers import BlockSpec, TransformerStack
from alicemind.core.ops.compiling import bucket_length, pad_to_bucket, trace_calls


def _spec(**kw) -> BlockSpec:
    return BlockSpec(32, 2, 64, dropout=0.0, attention_dropout=0.0, **kw)


def _ragged(seed: int, batch: int = 3, length: int = 8, *, full: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, 32, generator=g)
    mask = torch.ones(batch, length, dtype=torch.bool)
    if not full:
        for row in range(batch):
            mask[row, int(torch.randint(2, length + 1, (1,), generator=g)) :] = False
    return x, mask


@pytest.mark.parametrize("padding_free", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_traces_once_for_ragged_and_full_batches(padding_free, norm_first):
    torch.manual_seed(0)
    stack = TransformerStack(_spec(norm_first=norm_first), 2, padding_free=padding_free).eval()
    batches = [_ragged(1), _ragged(2), _ragged(3, full=True)]
    with torch.no_grad():
        trace = trace_calls(lambda x, m: stack(x, padding_mask=m).last_hidden_state, batches)
        eager = [stack(x, padding_mask=m).last_hidden_state for x, m in batches]
    assert trace.graphs == 1 and trace.recompilations == 0
    for got, want, (_, mask) in zip(trace.outputs, eager, batches, strict=True):
        torch.testing.assert_close(got[mask], want[mask], atol=1e-5, rtol=1e-5)


def test_attention_bias_stack_traces_once():
    torch.manual_seed(0)
    stack = TransformerStack(_spec(), 2).eval()
    batches = [(*_ragged(s), torch.randn(3, 2, 8, 8)) for s in range(3)]
    with torch.no_grad():
        trace = trace_calls(lambda x, m, b: stack(x, padding_mask=m, attn_bias=b).last_hidden_state, batches)
        eager = [stack(x, padding_mask=m, attn_bias=b).last_hidden_state for x, m, b in batches]
    assert trace.graphs == 1
    for got, want, (_, mask, _) in zip(trace.outputs, eager, batches, strict=True):
        torch.testing.assert_close(got[mask], want[mask], atol=1e-5, rtol=1e-5)


def test_training_step_traces_forward_and_backward_once():
    torch.manual_seed(0)
    stack = TransformerStack(_spec(), 2, padding_free=True).train()

    def loss_of(x, mask):
        return stack(x, padding_mask=mask).last_hidden_state[mask].square().mean()

    batches = [_ragged(s) for s in range(3)]
    trace = trace_calls(loss_of, batches, backend="aot_eager")  # aot_eager also traces the backward graph
    sum(trace.outputs).backward()
    compiled_grads = [p.grad.clone() for p in stack.parameters()]
    stack.zero_grad(set_to_none=True)
    eager = [loss_of(x, m) for x, m in batches]
    sum(eager).backward()
    assert trace.graphs == 1
    torch.testing.assert_close(torch.stack(trace.outputs), torch.stack(eager), atol=1e-5, rtol=1e-5)
    for got, p in zip(compiled_grads, stack.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-4)


def test_decoder_steps_trace_prompt_once_and_every_later_step_once():
    torch.manual_seed(0)
    stack = TransformerStack(_spec(norm_first=True, cross_attention=True), 2, final_norm=True).eval()
    source, source_mask = _ragged(5, batch=2, length=6)

    def step(x, caches):
        return stack(x, causal=True, encoder_padding_mask=source_mask, caches=caches).last_hidden_state

    def calls(caches):
        inputs = [torch.randn(2, 3 if i == 0 else 1, 32, generator=torch.Generator().manual_seed(i)) for i in range(5)]
        return [(x, caches) for x in inputs]

    with torch.no_grad():
        eager = [step(*call) for call in calls(stack.init_caches(2, 10, source))]
        caches = stack.init_caches(2, 10, source)
        trace = trace_calls(step, calls(caches))
    assert trace.graphs == 2  # the prompt's shape, then one graph for every one-token step
    assert caches[0].self_kv.length == 7
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_bucket_length_rounds_up_to_the_next_bucket():
    assert [bucket_length(n, (16, 32, 64)) for n in (1, 16, 17, 64, 65, 130)] == [16, 16, 32, 64, 128, 192]
    with pytest.raises(ValueError, match="at least 1"):
        bucket_length(0)


def test_pad_to_bucket_keeps_outputs_at_the_real_positions():
    torch.manual_seed(0)
    stack = TransformerStack(_spec(), 2).eval()
    x, mask = _ragged(7, length=11)
    padded, length = pad_to_bucket({"x": x, "mask": mask}, (16, 32), mask_key="mask")
    assert length == 11 and padded["x"].shape == (3, 16, 32) and not padded["mask"][:, 11:].any()
    with torch.no_grad():
        want = stack(x, padding_mask=mask).last_hidden_state
        got = stack(padded["x"], padding_mask=padded["mask"]).last_hidden_state[:, :length]
    torch.testing.assert_close(got[mask], want[mask], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="attention mask"):
        pad_to_bucket({"x": x}, (16,), mask_key="mask")


def test_assert_training_traces_like_eager_passes_a_clean_loss_and_refuses_one_that_reaches_no_weights():
    from alicemind.core.ops.compiling import assert_training_traces_like_eager

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(6)])
    calls = [(torch.randn(3, 4),) for _ in range(3)]
    assert_training_traces_like_eager(model, lambda x: model(x).square().mean(), calls)
    model.zero_grad(set_to_none=True)
    with pytest.raises(AssertionError):  # only the last layer gets gradients: 2 tensors, not more than 10
        assert_training_traces_like_eager(model, lambda x: model[-1](x).square().mean(), calls)
