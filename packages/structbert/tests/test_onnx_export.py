"""``alicemind export onnx`` on tiny StructBERT models: each head's graph agrees with PyTorch in ONNX Runtime to
1e-4 at batch and sequence sizes other than the export's; bad input is one clear line."""

from __future__ import annotations

import json

import pytest
import torch

from alicemind.core.cli import main
from alicemind.core.interop.onnx_export import (
    EXPORT_SHAPE,
    OnnxMismatchError,
    compare_outputs,
    ort_session,
    run_session,
)
from alicemind.structbert import (
    StructBertConfig,
    StructBertForMaskedLM,
    StructBertForPreTraining,
    StructBertForQuestionAnswering,
    StructBertForSequenceClassification,
    StructBertForTokenClassification,
    StructBertModel,
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(cls, **fields):
    torch.manual_seed(0)
    config = StructBertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        **fields,
    )
    return cls(config).eval()


def batch(size: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (size, length), generator=g)
    mask = torch.ones_like(ids)
    for row in range(1, size):
        mask[row, length - row :] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


CASES = [
    (StructBertModel, "base", ["last_hidden_state", "pooler_output"]),
    (StructBertForSequenceClassification, "sequence-classification", ["logits"]),
    (StructBertForTokenClassification, "token-classification", ["logits"]),
    (StructBertForQuestionAnswering, "question-answering", ["start_logits", "end_logits"]),
    (StructBertForMaskedLM, "masked-lm", ["logits"]),
    (StructBertForPreTraining, "pretraining", ["logits.0", "logits.1"]),  # MLM and sentence-structure logits
]


@pytest.mark.parametrize(("cls", "task", "outputs"), CASES, ids=[c[1] for c in CASES])
def test_each_head_agrees_with_pytorch_at_other_sizes(tmp_path, cls, task, outputs):
    model = tiny(cls)
    model.save_pretrained(tmp_path / "model")
    assert main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx")]) == 0  # task from the folder
    manifest = json.loads((tmp_path / "onnx" / "onnx_export.json").read_text())
    assert manifest["task"] == task and manifest["files"] == ["model.onnx"]
    session = ort_session(tmp_path / "onnx" / "model.onnx")
    assert [o.name for o in session.get_outputs()] == outputs
    for size, length in [(1, 3), (3, 17), (6, 9)]:
        assert (size, length) != EXPORT_SHAPE
        feeds = batch(size, length, seed=size)
        got = run_session(session, feeds)
        with torch.no_grad():
            out = model(**feeds)
        expected = {
            "last_hidden_state": getattr(out, "last_hidden_state", None),
            "pooler_output": getattr(out, "pooler_output", None),
        }
        if task in ("question-answering", "pretraining"):
            expected = dict(zip(outputs, out.logits))
        elif task == "masked-lm":
            expected = {"logits": out.logits[0]}
        elif task != "base":
            expected = {"logits": out.logits}
        for name in outputs:
            assert got[name].shape == expected[name].shape
            assert (got[name] - expected[name]).abs().max().item() < 1e-4


def test_int8_prints_its_accuracy_change(tmp_path, capsys):
    tiny(StructBertForSequenceClassification).save_pretrained(tmp_path / "model")
    args = ["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx"), "--quantize", "int8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "model.int8.onnx int8: max_abs_diff" in printed and "top1_agreement" in printed
    manifest = json.loads((tmp_path / "onnx" / "onnx_export.json").read_text())
    assert 0.0 < manifest["int8"]["model.int8.onnx"]["max_abs_diff"] < 0.1  # int8 moves the logits, a little


def test_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["export", "onnx", str(tmp_path / "nope"), str(tmp_path / "onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"alicemind: error: no model folder at {tmp_path / 'nope'}"
    assert not (tmp_path / "onnx").exists()


def test_task_without_a_head_is_one_line(tmp_path, capsys):
    tiny(StructBertModel).save_pretrained(tmp_path / "model")
    assert main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx"), "--task", "seq2seq-lm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alicemind export onnx: error: StructBertConfig models have no 'seq2seq-lm' head; tasks: [")
    assert len(err.splitlines()) == 1


def test_non_empty_output_folder_is_refused(tmp_path, capsys):
    tiny(StructBertModel).save_pretrained(tmp_path / "model")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "notes.txt").write_text("mine")
    assert main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx")]) == 2
    assert "is not empty (pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "onnx" / "notes.txt").read_text() == "mine"


def test_a_difference_beyond_the_tolerance_fails():
    expected = {"logits": torch.tensor([[1.0, 2.0]])}
    got = compare_outputs(expected, {"logits": torch.tensor([[1.0, 2.00005]])}, "model.onnx", 1e-4)
    assert got == pytest.approx(5e-5, rel=1e-2)  # 2.00005 is not exact in fp32
    with pytest.raises(OnnxMismatchError, match=r"model.onnx: logits differs from PyTorch by 0.001 > tolerance 0.0001"):
        compare_outputs(expected, {"logits": torch.tensor([[1.001, 2.0]])}, "model.onnx", 1e-4)
    with pytest.raises(OnnxMismatchError, match="has shape"):
        compare_outputs(expected, {"logits": torch.tensor([1.0, 2.0])}, "model.onnx", 1e-4)
