"""mPLUG in transformers: AutoModelForImageTextToText loads a saved tiny captioner as ours (exactly our logits),
and its ``generate`` is ours."""

from __future__ import annotations

import pytest
import torch

import alicemind.mplug as mplug
from alicemind.core.interop.checks import max_output_difference


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    # Per test, not at import: a module-level setting leaked into the download tests of the same session.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_image_text_to_text_returns_our_captioner_with_our_outputs(tmp_path):
    import transformers

    torch.manual_seed(0)
    model = mplug.MPlugForCaption(mplug.MPlugConfig.from_preset("mplug.test")).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = transformers.AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
    assert type(loaded).__name__ == "MPlugForCaption"
    pixels = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[model.config.bos_token_id, 7, 8, 9], [model.config.bos_token_id, 10, 11, 0]])
    inputs = dict(pixel_values=pixels, input_ids=ids, attention_mask=(ids != 0).long())
    assert max_output_difference(model, "AutoModelForImageTextToText", tmp_path / "m", inputs) == 0.0
    ours = model.generate(pixels, num_beams=1, max_new_tokens=5, eos_token_id=None)
    theirs = loaded.generate(pixels, num_beams=1, max_new_tokens=5, eos_token_id=None)
    assert torch.equal(torch.as_tensor(ours), torch.as_tensor(theirs))
