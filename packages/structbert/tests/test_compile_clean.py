"""StructBERT traces whole under torch.compile(fullgraph=True), once per shape bucket, train and eval, padded and
padding-free, and gives eager's outputs."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.ops.compiling import trace_calls
from alicemind.structbert import (
    StructBertConfig,
    StructBertForPreTraining,
    StructBertForSequenceClassification,
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(**kw) -> StructBertConfig:
    return StructBertConfig(
        vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3, **kw,
    )  # fmt: skip


def _batches(full_last: bool = True):
    """Three [3, 8] batches of one bucket: two ragged, then a full one (no padding at all)."""
    out = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(5, 40, (3, 8), generator=g)
        mask = torch.ones(3, 8, dtype=torch.long)
        if not (full_last and seed == 2):
            mask[seed % 3, 3 + seed :] = 0
            mask[(seed + 1) % 3, 6:] = 0
        labels = torch.randint(0, 3, (3,), generator=g)
        mlm = torch.where(torch.rand(3, 8, generator=g) < 0.3, ids, -100).masked_fill(mask == 0, -100)
        out.append((ids, mask, labels, mlm))
    return out


@pytest.mark.parametrize("padding_free", [False, True])
def test_classifier_eval_traces_once(padding_free):
    torch.manual_seed(0)
    model = StructBertForSequenceClassification(_config(padding_free=padding_free)).eval()
    calls = [(ids, mask) for ids, mask, *_ in _batches()]
    with torch.no_grad():
        trace = trace_calls(lambda i, m: model(i, attention_mask=m).logits, calls)
        eager = [model(i, attention_mask=m).logits for i, m in calls]
    assert trace.graphs == 1
    torch.testing.assert_close(torch.stack(trace.outputs), torch.stack(eager), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_free", [False, True])
def test_classifier_training_loss_traces_once_with_its_backward(padding_free):
    torch.manual_seed(0)
    model = StructBertForSequenceClassification(_config(padding_free=padding_free)).train()
    calls = [(ids, mask, labels) for ids, mask, labels, _ in _batches()]

    def loss(i, m, y):
        return model(i, attention_mask=m, labels=y).loss

    trace = trace_calls(loss, calls, backend="aot_eager")
    sum(trace.outputs).backward()
    compiled = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    eager = [loss(*c) for c in calls]
    sum(eager).backward()
    assert trace.graphs == 1
    torch.testing.assert_close(torch.stack(trace.outputs), torch.stack(eager), atol=1e-5, rtol=1e-5)
    for got, p in zip(compiled, model.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-4)


def test_pretraining_loss_and_metrics_trace_once():
    torch.manual_seed(0)
    model = StructBertForPreTraining(_config()).train()
    calls = [(ids, mask, mlm, labels % 2) for ids, mask, labels, mlm in _batches()]

    def objective(i, m, mlm, order):
        out = model(i, attention_mask=m, mlm_labels=mlm, sentence_order_label=order)
        return out.loss, out.metrics["mlm_acc"], out.metrics["sso_acc"]

    trace = trace_calls(objective, calls, backend="aot_eager")
    eager = [objective(*c) for c in calls]
    assert trace.graphs == 1
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(torch.stack(got), torch.stack(want), atol=1e-5, rtol=1e-5)
