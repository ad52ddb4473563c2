"""``optimize_for_inference(model)`` on mPLUG: the model compiles its own parts (image and text encoders, fusion,
decoder steps over a static cache) and stays itself; generation, grounding and retrieval scores equal eager ones,
the compiled parts are the ones that ran, and training afterwards still runs the eager modules with gradients."""

from __future__ import annotations

import torch
from mplug_testing import tiny_config, tokenizer

from alicemind.core.ops import optimize_for_inference
from alicemind.mplug import MPlugForCaption, MPlugForGrounding, MPlugForVQA


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    ids = torch.randint(5, 100, (2, 6), generator=g)
    ids[:, 0] = 1
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return pixels, ids.masked_fill(mask == 0, 0), mask


def _compiled_copy(model):
    twin = type(model)(model.config)
    twin.load_state_dict(model.state_dict())
    reports: list[str] = []
    assert optimize_for_inference(twin, backend="aot_eager", report=reports.append) is twin
    return twin, reports


def test_caption_and_vqa_generation_equal_eager_through_the_compiled_parts():
    torch.manual_seed(0)
    pixels, ids, mask = _inputs()
    caption = MPlugForCaption(tiny_config()).eval()
    compiled, reports = _compiled_copy(caption)
    for beams in (1, 3):
        want = caption.generate(pixels, num_beams=beams, max_new_tokens=6)
        assert torch.equal(compiled.generate(pixels, num_beams=beams, max_new_tokens=6), want)
    assert any("decode_step" in r for r in reports) and any("forward" in r for r in reports)
    parts = compiled.__dict__["_compiled_parts"]
    assert parts["visual_encoder"].compile_seconds and parts["decoder_steps"].compile_seconds
    vqa = MPlugForVQA(tiny_config()).eval()
    compiled, _ = _compiled_copy(vqa)
    want = vqa.generate(pixels, ids, mask, num_beams=2, max_new_tokens=4)
    assert torch.equal(compiled.generate(pixels, ids, mask, num_beams=2, max_new_tokens=4), want)
    assert compiled.__dict__["_compiled_parts"]["fusion_encoder"].compile_seconds


def test_grounding_bins_equal_eager_and_training_after_compiling_stays_eager():
    torch.manual_seed(0)
    pixels, ids, mask = _inputs(1)
    tok = tokenizer(with_box_tokens=True)
    model = MPlugForGrounding(tiny_config(vocab_size=tok.vocab_size)).eval()
    vocabulary = (
        tok.convert_tokens_to_ids("[unused339]"),
        tok.convert_tokens_to_ids([f"[unused{i}]" for i in range(340, 677)]),
    )
    model.set_box_vocabulary(*vocabulary)
    compiled, _ = _compiled_copy(model)
    compiled.set_box_vocabulary(*vocabulary)
    assert torch.equal(compiled.predict_bins(pixels, ids, mask), model.predict_bins(pixels, ids, mask))
    compiled.train()
    boxes = model.bin_token_ids[:4].repeat(2, 1)
    compiled(pixels, ids, mask, boxes).loss.backward()
    grads = [p.grad for p in compiled.visual_encoder.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
