"""StructVBERT traces whole under torch.compile(fullgraph=True), once per shape bucket: the one-stream encoder with
region features and text-only, the VQA and NLVR2 heads and every pre-training objective, eval and the training
loss with its backward, padded and padding-free, with eager's outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from structvbert_testing import tiny_config

from alicemind.core.ops.compiling import assert_training_traces_like_eager, trace_calls
from alicemind.structvbert import StructVBertForNLVR2, StructVBertForPreTraining, StructVBertForVQA, StructVBertModel

BATCH, LENGTH, REGIONS, FEAT = 3, 8, 4, 16
ANSWERS = ["yes", "no", "red", "two", "dog"]


def _config(**kw):
    return tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, answers=ANSWERS, **kw)


def _batches():
    """Three batches of one bucket ([3, 8] tokens, 4 regions of 16 features): ragged text and regions twice, then
    a full batch. The second batch masks no word, no region and asks no question, so those cases run through the
    same graph (their losses are 0)."""
    out = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
        visual_mask = torch.ones(BATCH, REGIONS, dtype=torch.long)
        if seed < 2:
            mask[seed, 3 + seed :] = 0
            mask[2, 6:] = 0
            visual_mask[1 - seed, 2 + seed :] = 0
        ids = torch.randint(5, 40, (BATCH, LENGTH), generator=g) * mask
        corner = torch.rand(BATCH, REGIONS, 2, generator=g) * 0.5
        boxes = torch.cat([corner, corner + 0.4], -1)
        feats = torch.randn(BATCH, REGIONS, FEAT, generator=g)
        region_mask = torch.zeros(BATCH, REGIONS, dtype=torch.bool)
        mlm = torch.full((BATCH, LENGTH), -100)
        answers = torch.full((BATCH, len(ANSWERS)), -1.0)
        if seed != 1:
            region_mask[0, 1] = region_mask[2, 0] = True
            mlm[0, 1], mlm[2, 4] = ids[0, 1], ids[2, 4]
            answers[0] = torch.tensor([0.0, 1.0, 0.3, 0.0, 0.0])
            answers[2] = torch.tensor([1.0, 0.0, 0.0, 0.6, 0.0])
        out.append({
            "input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "visual_feats": feats.masked_fill(region_mask[..., None], 0.0), "visual_boxes": boxes,
            "visual_mask": visual_mask, "region_mask": region_mask, "region_targets": feats,
            "obj_labels": torch.randint(0, 10, (BATCH, REGIONS), generator=g),
            "attr_labels": torch.randint(0, 6, (BATCH, REGIONS), generator=g), "mlm_labels": mlm,
            "matched_labels": torch.tensor([1, 0, 1]), "answer_labels": answers,
            "vqa_labels": torch.rand(BATCH, len(ANSWERS), generator=g).round(decimals=1),
            "nlvr2_labels": torch.tensor([0, 1, 1]),
        })  # fmt: skip
    return out


ENCODER_KEYS = ("input_ids", "visual_feats", "visual_boxes", "attention_mask", "token_type_ids", "visual_mask")
PRETRAINING_LABELS = ("mlm_labels", "region_mask", "region_targets", "obj_labels", "attr_labels", "matched_labels",
                      "answer_labels")  # fmt: skip


def _encoder_call(b, *, regions=True):
    return tuple(b[k] for k in ENCODER_KEYS) if regions else (b["input_ids"], b["attention_mask"])


def _encode(model, ids, feats=None, boxes=None, mask=None, types=None, visual_mask=None):
    if mask is None:  # the text-only call passes (ids, mask)
        ids, mask = ids, feats
        feats = None
    out = model(ids, feats, boxes, attention_mask=mask, token_type_ids=types, visual_mask=visual_mask)
    return out.last_hidden_state, out.visual_hidden_state, out.pooler_output


def _assert_real_equal(got, want, call):
    """Text states at real tokens, region states at real regions, pooled vectors: equal (1e-5)."""
    text_mask = call[3] if len(call) > 2 else call[1]
    region_mask = call[5] if len(call) > 2 else None
    torch.testing.assert_close(got[0][text_mask.bool()], want[0][text_mask.bool()], atol=1e-5, rtol=1e-5)
    if region_mask is not None:
        torch.testing.assert_close(got[1][region_mask.bool()], want[1][region_mask.bool()], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2], want[2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_free", [False, True])
@pytest.mark.parametrize("regions", [True, False], ids=["regions", "text-only"])
def test_encoder_traces_once_and_padding_free_equals_padded(regions, padding_free):
    torch.manual_seed(0)
    model = StructVBertModel(_config(padding_free=padding_free)).eval()
    padded = StructVBertModel(_config()).eval()
    padded.load_state_dict(model.state_dict())
    calls = [_encoder_call(b, regions=regions) for b in _batches()]
    with torch.no_grad():
        trace = trace_calls(lambda *a: _encode(model, *a), calls)
        eager = [_encode(model, *c) for c in calls]
        reference = [_encode(padded, *c) for c in calls]
    assert trace.graphs == 1
    for got, want, ref, call in zip(trace.outputs, eager, reference, calls, strict=True):
        _assert_real_equal(got, want, call)
        _assert_real_equal(want, ref, call)


@pytest.mark.parametrize("padding_free", [False, True])
def test_vqa_logits_and_training_loss_trace_once(padding_free):
    torch.manual_seed(0)
    model = StructVBertForVQA(_config(padding_free=padding_free))
    calls = [(*_encoder_call(b), b["vqa_labels"]) for b in _batches()]

    def forward(ids, feats, boxes, mask, types, visual_mask, labels=None):
        return model(ids, visual_feats=feats, visual_boxes=boxes, attention_mask=mask, token_type_ids=types,
                     visual_mask=visual_mask, labels=labels)  # fmt: skip

    with torch.no_grad():
        model.eval()
        trace = trace_calls(lambda *a: forward(*a[:6]).logits, calls)
        eager = [forward(*c[:6]).logits for c in calls]
    assert trace.graphs == 1
    torch.testing.assert_close(torch.stack(trace.outputs), torch.stack(eager), atol=1e-5, rtol=1e-5)
    assert_training_traces_like_eager(model.train(), lambda *a: forward(*a).loss, calls)


def _pairs(b):
    """NLVR2 inputs: each sentence with two images (the batch's regions and the same ones reversed)."""
    feats = torch.stack([b["visual_feats"], b["visual_feats"].flip(1)], 1)
    boxes = torch.stack([b["visual_boxes"], b["visual_boxes"].flip(1)], 1)
    visual_mask = torch.stack([b["visual_mask"], b["visual_mask"].flip(1)], 1)
    return b["input_ids"], feats, boxes, b["attention_mask"], visual_mask, b["nlvr2_labels"]


@pytest.mark.parametrize("padding_free", [False, True])
def test_nlvr2_logits_and_training_loss_trace_once(padding_free):
    torch.manual_seed(0)
    model = StructVBertForNLVR2(_config(padding_free=padding_free))
    calls = [_pairs(b) for b in _batches()]

    def forward(ids, feats, boxes, mask, visual_mask, labels=None):
        return model(ids, feats, boxes, attention_mask=mask, visual_mask=visual_mask, labels=labels)

    with torch.no_grad():
        model.eval()
        trace = trace_calls(lambda *a: forward(*a[:5]).logits, calls)
        eager = [forward(*c[:5]).logits for c in calls]
    assert trace.graphs == 1
    torch.testing.assert_close(torch.stack(trace.outputs), torch.stack(eager), atol=1e-5, rtol=1e-5)
    assert_training_traces_like_eager(model.train(), lambda *a: forward(*a).loss, calls)


def _pretraining(model, *args, text_only=False):
    if text_only:
        ids, mask, mlm = args
        return model(ids, attention_mask=mask, mlm_labels=mlm)
    encoder = dict(zip(ENCODER_KEYS[1:], args[1:6], strict=True))
    labels = dict(zip(PRETRAINING_LABELS, args[6:], strict=True))
    return model(args[0], **encoder, **labels)


@pytest.mark.parametrize("padding_free", [False, True])
def test_pretraining_loss_of_every_objective_traces_once_with_its_backward(padding_free):
    torch.manual_seed(0)
    model = StructVBertForPreTraining(_config(padding_free=padding_free)).train()
    calls = [(*_encoder_call(b), *(b[k] for k in PRETRAINING_LABELS)) for b in _batches()]
    assert_training_traces_like_eager(model, lambda *a: _pretraining(model, *a).loss, calls)


@pytest.mark.parametrize("padding_free", [False, True])
def test_text_only_pretraining_stage_traces_once_with_its_backward(padding_free):
    torch.manual_seed(0)
    model = StructVBertForPreTraining(_config(padding_free=padding_free)).train()
    calls = [(b["input_ids"], b["attention_mask"], b["mlm_labels"]) for b in _batches()]
    assert_training_traces_like_eager(model, lambda *a: _pretraining(model, *a, text_only=True).loss, calls)


def test_pretraining_metrics_trace_once_and_a_batch_with_nothing_to_predict_adds_0():
    torch.manual_seed(0)
    model = StructVBertForPreTraining(_config()).train()
    calls = [(*_encoder_call(b), *(b[k] for k in PRETRAINING_LABELS)) for b in _batches()]

    def objective(*args):
        out = _pretraining(model, *args)
        return out.loss, out.metrics

    trace = trace_calls(objective, calls, backend="aot_eager")
    eager = [objective(*c) for c in calls]
    assert trace.graphs == 1
    for (got_loss, got), (want_loss, want) in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got_loss, want_loss, atol=1e-5, rtol=1e-5)
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-5, msg=key)
    loss, metrics = eager[1]  # nothing masked and no question: only image-text matching is learnt
    for name in ("mlm", "feat", "obj", "attr", "qa"):
        assert metrics[f"{name}_loss"] == 0, name
    torch.testing.assert_close(loss, metrics["itm_loss"])
    assert all(eager[0][1][f"{name}_loss"] > 0 for name in ("mlm", "feat", "obj", "attr", "itm", "qa"))


def test_pretraining_losses_equal_the_mean_over_the_predicted_items():
    """Masked means equal the means over the selected items (what the original computes)."""
    torch.manual_seed(0)
    model = StructVBertForPreTraining(_config()).eval()
    b = _batches()[0]
    with torch.no_grad():
        out = _pretraining(model, *_encoder_call(b), *(b[k] for k in PRETRAINING_LABELS))
        enc = out.logits
        picked = b["region_mask"]
        heads = model.obj_predict_head(enc.visual_hidden_state[picked])
        feat = torch.nn.functional.smooth_l1_loss(heads["feat"], b["region_targets"][picked])
        obj = torch.nn.functional.cross_entropy(heads["obj"], b["obj_labels"][picked])
        asked = b["answer_labels"][:, 0] >= 0
        qa = torch.nn.functional.binary_cross_entropy_with_logits(
            model.answer_head(enc.pooler_output[asked]), b["answer_labels"][asked]
        ) * len(ANSWERS)
    torch.testing.assert_close(out.metrics["feat_loss"], feat)
    torch.testing.assert_close(out.metrics["obj_loss"], obj)
    torch.testing.assert_close(out.metrics["qa_loss"], qa)


def test_padding_free_is_saved_in_config_json(tmp_path):
    model = StructVBertModel(_config(padding_free=True))
    model.save_pretrained(tmp_path)
    assert '"padding_free": true' in (tmp_path / "config.json").read_text()
    assert StructVBertModel.from_pretrained(tmp_path).encoder.padding_free is True
