"""StructuralLM traces whole under torch.compile(fullgraph=True), once per shape bucket: the encoder and every task
head, eval and the training loss with its backward, padded and padding-free, with eager's outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.ops.compiling import assert_training_traces_like_eager, trace_calls
from alicemind.structurallm import (
    StructuralLMConfig,
    StructuralLMForPreTraining,
    StructuralLMForQuestionAnswering,
    StructuralLMForSequenceClassification,
    StructuralLMForTokenClassification,
    StructuralLMModel,
)

BATCH, LENGTH = 3, 10


def _config(**kw) -> StructuralLMConfig:
    return StructuralLMConfig.from_preset("structurallm.test", hidden_dropout_prob=0.0, num_labels=3, **kw)


def _batches():
    """Three [3, 10] batches of one bucket: two ragged, then a full one. Labels of every head ride along; the
    second batch picks no cell for CPC, so the "no CPC token" case runs through the same graph."""
    out = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
        if seed < 2:
            mask[seed, 4 + seed :] = 0
            mask[2, 7:] = 0
        ids = torch.randint(4, 250, (BATCH, LENGTH), generator=g).masked_fill(mask == 0, 1)
        corner = torch.randint(0, 800, (BATCH, LENGTH, 2), generator=g)
        bbox = torch.cat([corner, corner + torch.randint(0, 200, (BATCH, LENGTH, 2), generator=g)], -1)
        bbox = bbox.masked_fill(mask[..., None] == 0, 0)
        pos_bbox = torch.randint(1, 21, (BATCH, LENGTH), generator=g).masked_fill(mask == 0, 0)
        token_labels = torch.randint(0, 3, (BATCH, LENGTH), generator=g).masked_fill(mask == 0, -100)
        mlm = torch.where(torch.rand(BATCH, LENGTH, generator=g) < 0.3, ids, -100).masked_fill(mask == 0, -100)
        mlm[0, 1] = ids[0, 1]  # at least one predicted token per batch
        cpc = torch.full((BATCH, LENGTH), -100)
        if seed != 1:
            cpc[1, 1:3] = torch.randint(0, 16, (2,), generator=g)
        out.append({
            "input_ids": ids, "bbox": bbox, "pos_bbox": pos_bbox, "attention_mask": mask,
            "labels": torch.randint(0, 3, (BATCH,), generator=g), "token_labels": token_labels,
            "start_positions": torch.randint(0, 4, (BATCH,), generator=g),
            "end_positions": torch.randint(3, 6, (BATCH,), generator=g), "mlm_labels": mlm, "cpc_labels": cpc,
        })  # fmt: skip
    return out


def _inputs(b):
    return b["input_ids"], b["bbox"], b["pos_bbox"], b["attention_mask"]


# Each model class -> what its eval forward returns as tensors, and its training loss (None: no loss).
def _encoder_outputs(model, ids, bbox, pos, mask):
    out = model(ids, bbox=bbox, attention_mask=mask, pos_bbox=pos)
    return out.last_hidden_state, out.pooler_output


def _logits(model, ids, bbox, pos, mask):
    logits = model(ids, bbox=bbox, attention_mask=mask, pos_bbox=pos).logits
    return logits if isinstance(logits, tuple) else (logits,)


HEADS = {
    "model": (StructuralLMModel, _encoder_outputs, None),
    "pretraining": (
        StructuralLMForPreTraining,
        _logits,
        lambda m, b: m(*b[:1], bbox=b[1], pos_bbox=b[2], attention_mask=b[3], mlm_labels=b[4], cpc_labels=b[5]),
    ),
    "token-classification": (
        StructuralLMForTokenClassification,
        _logits,
        lambda m, b: m(b[0], bbox=b[1], pos_bbox=b[2], attention_mask=b[3], labels=b[4]),
    ),
    "sequence-classification": (
        StructuralLMForSequenceClassification,
        _logits,
        lambda m, b: m(b[0], bbox=b[1], pos_bbox=b[2], attention_mask=b[3], labels=b[4]),
    ),
    "qa": (
        StructuralLMForQuestionAnswering,
        _logits,
        lambda m, b: m(b[0], bbox=b[1], pos_bbox=b[2], attention_mask=b[3], start_positions=b[4], end_positions=b[5]),
    ),
}
LABELS = {
    "pretraining": ("mlm_labels", "cpc_labels"),
    "token-classification": ("token_labels",),
    "sequence-classification": ("labels",),
    "qa": ("start_positions", "end_positions"),
}


def _assert_real_positions_equal(got, want, mask):
    """Tensors equal (1e-5); per-token ones [B, L, ...] only at real positions (padding rows are never read)."""
    for g, w in zip(got, want, strict=True):
        if g.dim() >= 2 and g.shape[:2] == mask.shape:
            g, w = g[mask.bool()], w[mask.bool()]
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_free", [False, True])
@pytest.mark.parametrize("head", ["model", "token-classification", "sequence-classification", "qa"])
def test_eval_forward_traces_once(head, padding_free):
    klass, outputs, _ = HEADS[head]
    torch.manual_seed(0)
    model = klass(_config(padding_free=padding_free)).eval()
    calls = [_inputs(b) for b in _batches()]
    with torch.no_grad():
        trace = trace_calls(lambda *a: outputs(model, *a), calls)
        eager = [outputs(model, *c) for c in calls]
    assert trace.graphs == 1
    for got, want, call in zip(trace.outputs, eager, calls, strict=True):
        _assert_real_positions_equal(got, want, call[3])


@pytest.mark.parametrize("padding_free", [False, True])
def test_pretraining_eval_logits_trace_once(padding_free):
    """Without labels the pre-training model returns MVLM and CPC logits of every token."""
    torch.manual_seed(0)
    model = StructuralLMForPreTraining(_config(padding_free=padding_free)).eval()
    calls = [_inputs(b) for b in _batches()]
    with torch.no_grad():
        trace = trace_calls(lambda *a: _logits(model, *a), calls)
        eager = [_logits(model, *c) for c in calls]
    assert trace.graphs == 1
    for got, want, call in zip(trace.outputs, eager, calls, strict=True):
        _assert_real_positions_equal(got, want, call[3])


@pytest.mark.parametrize("padding_free", [False, True])
@pytest.mark.parametrize("head", list(LABELS))
def test_training_loss_traces_once_with_its_backward(head, padding_free):
    klass, _, forward = HEADS[head]
    torch.manual_seed(0)
    model = klass(_config(padding_free=padding_free)).train()
    calls = [(*_inputs(b), *(b[k] for k in LABELS[head])) for b in _batches()]

    def loss(*args):
        return forward(model, args).loss

    assert_training_traces_like_eager(model, loss, calls)


def test_pretraining_metrics_trace_once_and_a_batch_without_cpc_tokens_adds_no_cpc_loss():
    torch.manual_seed(0)
    model = StructuralLMForPreTraining(_config()).train()
    calls = [(*_inputs(b), b["mlm_labels"], b["cpc_labels"]) for b in _batches()]

    def objective(*args):
        out = HEADS["pretraining"][2](model, args)
        return out.loss, out.metrics["mlm_loss"], out.metrics["mlm_acc"], out.metrics["cpc_acc"]

    trace = trace_calls(objective, calls, backend="aot_eager")
    eager = [objective(*c) for c in calls]
    assert trace.graphs == 1
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(torch.stack(got), torch.stack(want), atol=1e-5, rtol=1e-5)
    loss, mlm_loss, _, cpc_acc = eager[1]  # the batch with no CPC token: the loss is the MVLM loss alone
    torch.testing.assert_close(loss, mlm_loss)
    assert cpc_acc == 0
    assert eager[0][0] > eager[0][1]  # with CPC tokens the CPC loss is added


@pytest.mark.parametrize("head", list(HEADS))
def test_padding_free_outputs_equal_padded_ones_at_real_positions(head):
    klass, outputs, _ = HEADS[head]
    torch.manual_seed(0)
    model = klass(_config()).eval()
    assert model.config.padding_free is None  # the default: packed in eager training steps only, so eval is padded
    free = klass(_config(padding_free=True)).eval()
    free.load_state_dict(model.state_dict())
    with torch.no_grad():
        for b in _batches():
            _assert_real_positions_equal(outputs(free, *_inputs(b)), outputs(model, *_inputs(b)), b["attention_mask"])


def test_padding_free_is_saved_in_config_json(tmp_path):
    model = StructuralLMModel(_config(padding_free=True))
    model.save_pretrained(tmp_path)
    assert '"padding_free": true' in (tmp_path / "config.json").read_text()
    again = StructuralLMModel.from_pretrained(tmp_path)
    assert again.config.padding_free is True and again.encoder.padding_free is True
