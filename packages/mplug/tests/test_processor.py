"""The processor against the same pillow operations done by hand; the tokenizer conventions; bad images."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from mplug_testing import draw_shape, processor, tokenizer
from PIL import Image

from alicemind.mplug import ImageError, load_image
from alicemind.mplug.processor import CLIP_MEAN, CLIP_STD, box_to_tokens, clean_text, tokens_to_box


def reference_pixels(image: Image.Image, size: int) -> torch.Tensor:
    array = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0
    array = (array - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    return torch.from_numpy(array).permute(2, 0, 1).float()


def test_test_transform_equals_pillow_reference(tmp_path):
    image = draw_shape("red", "circle", random.Random(0), size=50)
    path = tmp_path / "x.png"
    image.save(path)
    proc = processor()
    pixels = proc.images([path, image])
    assert pixels.shape == (2, 3, 32, 32)
    ref = reference_pixels(image, 32)
    torch.testing.assert_close(pixels[0], ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(pixels[1], ref, atol=1e-6, rtol=1e-6)


def test_train_transform_is_seeded_and_changes_the_image():
    image = draw_shape("blue", "square", random.Random(1), size=48)
    a = processor().image(image, train=True)
    b = processor().image(image, train=True)
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    assert not torch.allclose(a, reference_pixels(image, 32))


def test_tokens_cls_x_without_sep_and_eos_for_targets():
    proc = processor()
    tok = tokenizer()
    cls, sep = tok.convert_tokens_to_ids("[CLS]"), tok.convert_tokens_to_ids("[SEP]")
    red, circle = tok.convert_tokens_to_ids("red"), tok.convert_tokens_to_ids("circle")
    assert proc.ids("Red circle") == [cls, red, circle]
    assert proc.ids("red circle", eos=True) == [cls, red, circle, sep]
    ids, mask = proc.text(["red", "red circle"], eos=True)
    assert ids.tolist() == [[cls, red, sep, 0], [cls, red, circle, sep]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert proc.decode(torch.tensor([[cls, red, circle, sep, red]])) == ["red circle"]


def test_clean_text_as_released():
    assert clean_text("A man's dog, (running) down-hill/fast!!", max_words=4) == "a mans dog running"


def test_box_tokens_round_trip_within_a_bin():
    tokens = box_to_tokens((10, 20, 110, 70), 200, 100)
    assert tokens == ["[unused" + str(340 + int(np.floor(v * 336))) + "]" for v in (0.3, 0.45, 0.5, 0.5)]
    box = tokens_to_box(tokens, 200, 100)
    assert np.allclose(box, (10, 20, 110, 70), atol=200 / 336 + 1e-6)


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_grey_cmyk_and_16bit_are_converted(tmp_path):
    grey = load_image(_png_bytes(Image.new("L", (4, 4), 77)))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (77, 77, 77)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=100)
    r, g, b = load_image(path).getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60
    deep = Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16))
    assert deep.mode.startswith("I")
    converted = load_image(_png_bytes(deep))
    assert converted.getpixel((0, 0)) == (40000 >> 8,) * 3  # scaled, not clipped to 255


def test_one_pixel_image_is_resized():
    pixels = processor().image(Image.new("RGB", (1, 1), (255, 0, 0)))
    assert pixels.shape == (3, 32, 32)
    torch.testing.assert_close(pixels[:, 5, 7], pixels[:, 20, 30])


def test_truncated_missing_non_image_and_huge_are_clear_errors(tmp_path):
    image = draw_shape("green", "triangle", random.Random(2), size=64)
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(cut)
    with pytest.raises(ImageError, match="no image file at"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        load_image(text)
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    with pytest.raises(ImageError, match="over the limit of 10000"):
        load_image(big, max_pixels=10_000)
