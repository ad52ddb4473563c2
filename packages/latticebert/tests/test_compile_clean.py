"""LatticeBERT traces whole under torch.compile(fullgraph=True) (its lattice position bias is an additive bias
shared by all layers): classifier eval and the training loss with its backward, once per shape bucket."""

from __future__ import annotations

import torch
from labert_testing import tiny_config

from alicemind.core.ops.compiling import trace_calls
from alicemind.latticebert import LatticeBertForSequenceClassification


def _lattice_batches():
    """Three [2, 8] batches of one bucket: 6 characters and 2 words per row, the second row shorter in two."""
    calls = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(5, 60, (2, 8), generator=g)
        starts = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2]] * 2)
        ends = torch.tensor([[0, 1, 2, 3, 4, 5, 1, 4]] * 2)
        mask = torch.ones(2, 8, dtype=torch.long)
        if seed < 2:
            mask[1, 5 + seed :] = 0
            starts[1, 5 + seed :] = ends[1, 5 + seed :] = 0
        calls.append((ids, mask, starts, ends, torch.tensor([seed % 2, 1])))
    return calls


def test_classifier_eval_and_training_loss_trace_once():
    torch.manual_seed(0)
    model = LatticeBertForSequenceClassification(
        tiny_config(100, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    calls = _lattice_batches()

    def logits(i, m, s, e, _):
        return model(i, attention_mask=m, lattice_starts=s, lattice_ends=e).logits

    def loss(i, m, s, e, y):
        out = model(i, attention_mask=m, lattice_starts=s, lattice_ends=e, labels=y)
        return out.loss, out.metrics["accuracy"]

    with torch.no_grad():
        model.eval()
        trace = trace_calls(logits, calls)
        eager = [logits(*c) for c in calls]
    assert trace.graphs == 1
    torch.testing.assert_close(torch.stack(trace.outputs), torch.stack(eager), atol=1e-5, rtol=1e-5)

    model.train()
    trace = trace_calls(loss, calls, backend="aot_eager")
    sum(out[0] for out in trace.outputs).backward()
    compiled = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    eager = [loss(*c) for c in calls]
    sum(out[0] for out in eager).backward()
    assert trace.graphs == 1
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(torch.stack(got), torch.stack(want), atol=1e-5, rtol=1e-5)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == len(compiled) > 0
    for got, want in zip(compiled, grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
