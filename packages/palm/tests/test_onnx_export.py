"""``alicemind export onnx`` on tiny PALM models: encoder + decoder-step graphs with the KV cache as inputs and
outputs, checked in ONNX Runtime at sizes other than the export's, and a greedy decode run entirely in ONNX
Runtime that gives core.generation's tokens."""

from __future__ import annotations

import json

import pytest
import torch

from alicemind.core.cli import main
from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.interop.onnx_export import EXPORT_SHAPE, ort_session, run_session
from alicemind.core.interop.onnx_seq2seq import greedy_decode_onnx
from alicemind.palm import PalmConfig, PalmForConditionalGeneration


def tiny(preset: str, **fields) -> PalmForConditionalGeneration:
    torch.manual_seed(0)
    model = PalmForConditionalGeneration(PalmConfig.from_preset(preset, **fields)).eval()
    with torch.no_grad():  # widen the tiny init so greedy tokens are decisive
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.5)
    return model


def sources(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for row in range(1, batch):
        ids[row, length - row :] = 0
        mask[row, length - row :] = 0
    return ids, mask


@pytest.fixture(scope="module", params=["palm.ch.tiny", "palm.en.tiny"])
def exported(request, tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("palm_onnx")
    model = tiny(request.param)
    model.save_pretrained(root / "model")
    assert main(["export", "onnx", str(root / "model"), str(root / "onnx"), "--quantize", "int8"]) == 0
    return model, root / "onnx"


def test_writes_encoder_and_decoder_step_graphs_with_the_cache_as_inputs_and_outputs(exported):
    model, out = exported
    manifest = json.loads((out / "onnx_export.json").read_text())
    assert manifest["task"] == "seq2seq-lm"
    assert manifest["files"] == ["encoder.onnx", "decoder_step.onnx", "encoder.int8.onnx", "decoder_step.int8.onnx"]
    assert max(manifest["max_abs_diff"].values()) < 1e-4
    layers = len(model.decoder.layers)
    step = ort_session(out / "decoder_step.onnx")
    inputs = [i.name for i in step.get_inputs()]
    outputs = [o.name for o in step.get_outputs()]
    assert inputs[:2] == ["decoder_input_ids", "encoder_attention_mask"]
    assert sum(n.startswith("past_") for n in inputs) == sum(n.startswith("cross_") for n in inputs) == 2 * layers
    assert outputs[0] == "logits" and sum(n.startswith("present_") for n in outputs) == 2 * layers


@pytest.mark.parametrize(("batch", "length"), [(1, 4), (3, 13), (5, 7)])
def test_greedy_decode_in_onnx_runtime_gives_our_tokens(exported, batch, length):
    model, out = exported
    assert (batch, length) != EXPORT_SHAPE
    ids, mask = sources(batch, length, seed=batch)
    defaults = model.generation_defaults()
    expected = generate(model, ids, mask, GenerationConfig(**defaults, max_new_tokens=10)).sequences
    got = greedy_decode_onnx(
        ort_session(out / "encoder.onnx"),
        ort_session(out / "decoder_step.onnx"),
        ids,
        mask,
        start_id=defaults["decoder_start_token_id"],
        eos_id=defaults["eos_token_id"],
        pad_id=defaults["pad_token_id"],
        max_new_tokens=10,
    )
    assert torch.equal(got, expected[:, : got.shape[1]]) and got.shape == expected.shape
    if batch > 1:  # not one token everywhere: the comparison can tell models apart
        assert len(set(got[:, 1:].flatten().tolist())) > 1


def test_decoder_step_logits_agree_with_pytorch_to_1e_4(exported):
    model, out = exported
    ids, mask = sources(4, 10, seed=7)
    cross = run_session(ort_session(out / "encoder.onnx"), {"input_ids": ids, "attention_mask": mask})
    step = ort_session(out / "decoder_step.onnx")
    with torch.no_grad():
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 8)
    attn = model.decoder.layers[0].self_attn
    past = {
        i.name: torch.zeros(4, attn.num_heads, 0, attn.head_dim) for i in step.get_inputs() if i.name.startswith("past")
    }
    for token in (model.config.start_token_id, 9, 33, 17, 60):
        new = torch.full((4, 1), token)
        with torch.no_grad():
            expected = model.decode_step(new, cache)
        got = run_session(step, {"decoder_input_ids": new, "encoder_attention_mask": mask, **past, **cross})
        assert (got["logits"] - expected).abs().max().item() < 1e-4
        past = {n.replace("present", "past"): v for n, v in got.items() if n.startswith("present")}


def test_int8_change_is_printed(tmp_path, capsys):
    tiny("palm.ch.tiny").save_pretrained(tmp_path / "model")
    assert main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx"), "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    assert "decoder_step.int8.onnx int8: greedy_token_agreement" in printed
    assert "tolerance 0.0001" in printed


def test_pointer_generator_is_refused_in_one_line(tmp_path, capsys):
    tiny("palm.en.tiny", use_pointer_generator=True).save_pretrained(tmp_path / "model")
    assert main(["export", "onnx", str(tmp_path / "model"), str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "alicemind export onnx: error: ONNX export of a pointer-generator model is not supported (its copy state)"
    )
