"""SDCUP traces whole under torch.compile(fullgraph=True), once per shape bucket: the encoder, the NL2SQL (SQLova)
head and the schema-dependency pre-training model, eval and the training loss with its backward, padded and
padding-free, with eager's outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.ops.compiling import trace_calls
from alicemind.sdcup import SdcupConfig, SdcupEncoder, SdcupForNL2SQL, SdcupForPreTraining

BATCH, LENGTH, Q_LEN, N_COLS, COL_LEN = 3, 16, 5, 3, 2
INPUT_KEYS = ("input_ids", "token_type_ids", "question_index", "question_mask", "column_index", "column_token_mask",
              "column_mask", "question_knowledge", "header_knowledge")  # fmt: skip
LABEL_KEYS = ("sel", "agg", "conn", "cond_col", "cond_op", "cond_start", "cond_end")
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, head_dropout=0.0)


def _config(**kw) -> SdcupConfig:
    return SdcupConfig.from_preset("sdcup.test", **NO_DROPOUT, **kw)


def _batches():
    """Three batches of one bucket ([3, 16] tokens, 5 question tokens, 3 columns of 2 sub-tokens), shaped as
    ``collate_serialized`` pads them: two ragged, then a full one. The second has no condition (no WHERE
    column, hence no operator or value span) and no masked token, so those cases run through the same graph."""
    out = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        full = seed == 2
        q_lens = [Q_LEN, Q_LEN - 1 - seed % 2, Q_LEN] if not full else [Q_LEN] * BATCH
        n_cols = [N_COLS, 2, N_COLS - seed] if not full else [N_COLS] * BATCH
        ids = torch.zeros(BATCH, LENGTH, dtype=torch.long)
        seg = torch.zeros(BATCH, LENGTH, dtype=torch.long)
        q_index = torch.zeros(BATCH, Q_LEN, dtype=torch.long)
        q_mask = torch.zeros(BATCH, Q_LEN, dtype=torch.bool)
        col_index = torch.zeros(BATCH, N_COLS, COL_LEN, dtype=torch.long)
        col_token_mask = torch.zeros(BATCH, N_COLS, COL_LEN, dtype=torch.bool)
        col_mask = torch.zeros(BATCH, N_COLS, dtype=torch.bool)
        for b in range(BATCH):
            q, n = q_lens[b], n_cols[b]
            used = LENGTH if full else 2 + q + 3 * n
            ids[b, :used] = torch.randint(5, 200, (used,), generator=g)
            seg[b, : 2 + q], seg[b, 2 + q : used] = 1, 2
            q_index[b, :q], q_mask[b, :q] = torch.arange(1, 1 + q), True
            col_mask[b, :n] = True
            for c in range(n):
                width = 1 + (b + c) % COL_LEN
                start = 2 + q + 3 * c + 1
                col_index[b, c, :width], col_token_mask[b, c, :width] = torch.arange(start, start + width), True
        inputs = {
            "input_ids": ids, "token_type_ids": seg, "question_index": q_index, "question_mask": q_mask,
            "column_index": col_index, "column_token_mask": col_token_mask, "column_mask": col_mask,
            "question_knowledge": torch.randint(0, 4, (BATCH, Q_LEN), generator=g) * q_mask,
            "header_knowledge": torch.randint(0, 3, (BATCH, N_COLS), generator=g) * col_mask,
        }  # fmt: skip
        conds = torch.full((BATCH, 2), -100)
        if seed != 1:
            conds[:, 0] = torch.tensor([0, 1, 0])
            conds[0, 1] = 1
        labels = {
            "sel": torch.tensor([[0, -100], [1, 0], [0, -100]]), "agg": torch.tensor([[0, -100], [3, 1], [4, -100]]),
            "conn": torch.tensor([1, 0, 1]), "cond_col": conds,
            "cond_op": torch.where(conds != -100, 2, -100),
            "cond_start": torch.where(conds != -100, torch.tensor([[1, 0], [2, -100], [-100, -100]]), -100),
            "cond_end": torch.where(conds != -100, torch.tensor([[2, 1], [3, -100], [-100, -100]]), -100),
        }  # fmt: skip
        heads = torch.randint(0, N_COLS + 1, (BATCH, Q_LEN), generator=g)
        heads = torch.minimum(heads, col_mask.sum(1, keepdim=True) - 1).masked_fill(~q_mask, -100)
        mlm = torch.full((BATCH, LENGTH), -100)
        if seed != 1:
            mlm[0, 3], mlm[2, 1] = ids[0, 3], ids[2, 1]
        dependency = {
            "dependency_heads": heads,
            "mlm_labels": mlm,
            "dependency_labels": torch.randint(0, 9, (BATCH, Q_LEN), generator=g).masked_fill(~q_mask, -100),
        }
        out.append((inputs, labels, dependency))
    return out


def _compare(trace, eager):
    assert trace.graphs == 1
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _compare_gradients(model, trace, loss, calls):
    """Backward through the compiled losses, then through eager ones: every parameter's gradient agrees."""
    sum(trace.outputs).backward()
    compiled = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    eager = [loss(*c) for c in calls]
    sum(eager).backward()
    _compare(trace, eager)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert compiled.keys() == grads.keys() and len(grads) > 10
    for name, got in compiled.items():
        torch.testing.assert_close(got, grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("padding_free", [False, True])
def test_encoder_traces_once_and_padding_free_equals_padded(padding_free):
    torch.manual_seed(0)
    model = SdcupEncoder(_config(padding_free=padding_free)).eval()
    padded = SdcupEncoder(_config()).eval()
    padded.load_state_dict(model.state_dict())
    calls = [(x["input_ids"], x["token_type_ids"]) for x, _, _ in _batches()]
    with torch.no_grad():
        trace = trace_calls(lambda i, s: model(i, s).last_hidden_state, calls)
        eager = [model(i, s).last_hidden_state for i, s in calls]
        reference = [padded(i, s).last_hidden_state for i, s in calls]
    assert trace.graphs == 1
    for got, want, ref, (_, seg) in zip(trace.outputs, eager, reference, calls, strict=True):
        real = seg > 0  # padding rows are never read
        torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(want[real], ref[real], atol=1e-5, rtol=1e-5)


def _nl2sql_call(inputs, labels=None):
    return tuple(inputs[k] for k in INPUT_KEYS) + (tuple(labels[k] for k in LABEL_KEYS) if labels else ())


def _nl2sql_args(args):
    """Flat tensors (dynamo's inputs) -> the model's keyword arguments."""
    inputs = dict(zip(INPUT_KEYS, args[:9], strict=True))
    labels = dict(zip(LABEL_KEYS, args[9:], strict=True)) if len(args) > 9 else None
    return inputs, labels


@pytest.mark.parametrize("padding_free", [False, True])
def test_nl2sql_logits_trace_once(padding_free):
    torch.manual_seed(0)
    model = SdcupForNL2SQL(_config(padding_free=padding_free)).eval()
    padded = SdcupForNL2SQL(_config()).eval()
    padded.load_state_dict(model.state_dict())

    def logits(m, *args):
        inputs, _ = _nl2sql_args(args)
        return m(**inputs).logits

    calls = [_nl2sql_call(x) for x, _, _ in _batches()]
    with torch.no_grad():
        trace = trace_calls(lambda *a: logits(model, *a), calls)
        eager = [logits(model, *c) for c in calls]
        reference = [logits(padded, *c) for c in calls]
    _compare(trace, eager)
    for got, want in zip(eager, reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_free", [False, True])
def test_nl2sql_training_loss_traces_once_with_its_backward(padding_free):
    torch.manual_seed(0)
    model = SdcupForNL2SQL(_config(padding_free=padding_free)).train()
    calls = [_nl2sql_call(x, y) for x, y, _ in _batches()]

    def loss(*args):
        inputs, labels = _nl2sql_args(args)
        return model(**inputs, labels=labels).loss

    _compare_gradients(model, trace_calls(loss, calls, backend="aot_eager"), loss, calls)


def test_nl2sql_loss_parts_trace_once_and_a_batch_without_conditions_adds_no_condition_loss():
    torch.manual_seed(0)
    model = SdcupForNL2SQL(_config()).train()
    calls = [_nl2sql_call(x, y) for x, y, _ in _batches()]

    def parts(*args):
        inputs, labels = _nl2sql_args(args)
        out = model(**inputs, labels=labels)
        return out.loss, out.metrics

    trace = trace_calls(parts, calls, backend="aot_eager")
    eager = [parts(*c) for c in calls]
    assert trace.graphs == 1
    for (got_loss, got), (want_loss, want) in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got_loss, want_loss, atol=1e-5, rtol=1e-5)
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-5, msg=key)
    loss, parts_without = eager[1]
    assert parts_without["wo"] == 0 and parts_without["wv_start"] == 0 and parts_without["wv_end"] == 0
    torch.testing.assert_close(loss, sum(parts_without.values()))
    assert eager[0][1]["wo"] > 0 and eager[0][1]["wv_start"] > 0


def _pretraining_call(inputs, dependency):
    keys = ("input_ids", "token_type_ids", "question_index", "question_mask", "column_index", "column_token_mask",
            "column_mask")  # fmt: skip
    return tuple(inputs[k] for k in keys) + (dependency["mlm_labels"], dependency["dependency_heads"],
                                               dependency["dependency_labels"])  # fmt: skip


@pytest.mark.parametrize("padding_free", [False, True])
def test_pretraining_scores_and_loss_trace_once_with_its_backward(padding_free):
    torch.manual_seed(0)
    model = SdcupForPreTraining(_config(padding_free=padding_free))
    calls = [_pretraining_call(x, d) for x, _, d in _batches()]
    with torch.no_grad():
        model.eval()
        scores = lambda *a: model(*a[:7]).logits  # noqa: E731
        _compare(trace_calls(scores, calls), [scores(*c) for c in calls])
    model.train()

    def loss(*args):
        out = model(*args[:7], mlm_labels=args[7], dependency_heads=args[8], dependency_labels=args[9])
        return out.loss

    _compare_gradients(model, trace_calls(loss, calls, backend="aot_eager"), loss, calls)


def test_pretraining_metrics_trace_once_and_a_batch_without_masked_tokens_adds_no_mlm_loss():
    torch.manual_seed(0)
    model = SdcupForPreTraining(_config()).train()
    calls = [_pretraining_call(x, d) for x, _, d in _batches()]

    def objective(*args):
        out = model(*args[:7], mlm_labels=args[7], dependency_heads=args[8], dependency_labels=args[9])
        return out.loss, out.metrics

    trace = trace_calls(objective, calls, backend="aot_eager")
    eager = [objective(*c) for c in calls]
    assert trace.graphs == 1
    for (got_loss, got), (want_loss, want) in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got_loss, want_loss, atol=1e-5, rtol=1e-5)
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-5, msg=key)
    loss, metrics = eager[1]  # no masked token: the loss is the dependency loss alone
    torch.testing.assert_close(loss, metrics["dependency_loss"])
    assert metrics["mlm_loss"] == 0 and metrics["mlm_acc"] == 0
    assert eager[0][0] > eager[0][1]["dependency_loss"]


def test_padding_free_is_saved_in_config_json(tmp_path):
    model = SdcupEncoder(_config(padding_free=True))
    model.save_pretrained(tmp_path)
    assert '"padding_free": true' in (tmp_path / "config.json").read_text()
    assert SdcupEncoder.from_pretrained(tmp_path).encoder.padding_free is True
