"""Images and text into mPLUG's tensors, with pillow only: the release's transforms (bicubic resize for test,
RandomResizedCrop + flip + RandomAugment for training, CLIP normalisation) and its tokenizer conventions.

Image decoding rules (documented conversions; anything else is an :class:`ImageError` naming the file):
- grey (``L``), palette, CMYK, ``RGBA``/``LA`` (alpha dropped) and 16-bit (``I;16``/``I``: scaled to 8 bits,
  not clipped) images become RGB;
- images larger than ``max_pixels`` (default 89.5 M, pillow's own bomb limit) are refused before decoding;
- a 1x1 (or any tiny) image is resized like any other;
- a truncated file, a non-image and a missing file are an :class:`ImageError`.
"""

from __future__ import annotations

import io
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps, UnidentifiedImageError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_MAX_PIXELS = 89_478_485  # pillow's MAX_IMAGE_PIXELS


class ImageError(ValueError):
    """An image could not be read; the message names the file and the reason."""


def load_image(source: str | os.PathLike | bytes | Image.Image, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (path, bytes or PIL image) fully into an RGB image, with the conversions above."""
    name = (
        "<bytes>" if isinstance(source, bytes) else ("<PIL image>" if isinstance(source, Image.Image) else str(source))
    )
    if isinstance(source, Image.Image):
        image = source
    else:
        if not isinstance(source, bytes) and not Path(source).is_file():
            raise ImageError(f"no image file at {name}")
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image pillow can read") from None
        except OSError as exc:
            raise ImageError(f"image {name} is truncated or corrupt: {exc}") from None
    w, h = image.size
    if w * h > max_pixels:
        raise ImageError(f"image {name} is {w}x{h} = {w * h} pixels, over the limit of {max_pixels} (max_pixels)")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or damaged data
        raise ImageError(f"image {name} is truncated or corrupt: {exc}") from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any pillow mode -> RGB; 16/32-bit grey is rescaled to 8 bits by its bit depth instead of clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        bits = 16 if image.mode.startswith("I;16") or np.asarray(image).max() < 65536 else 32
        grey = (np.asarray(image).astype(np.int64) >> (bits - 8)).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "F":
        return Image.fromarray(np.asarray(image).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


def to_tensor(image: Image.Image, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """RGB image -> normalised ``[3, H, W]`` float tensor."""
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (array - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def random_resized_crop(image: Image.Image, size: int, scale: tuple[float, float], rng: random.Random) -> Image.Image:
    """torchvision's RandomResizedCrop (ratio 3/4..4/3, 10 tries, centre fallback), bicubic."""
    w, h = image.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = round((target * ratio) ** 0.5), round((target / ratio) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return image.resize((size, size), Image.BICUBIC, box=(left, top, left + cw, top + ch))
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))


def _signed(value: float, rng: random.Random) -> float:
    return value if rng.random() < 0.5 else -value


def random_augment(image: Image.Image, rng: random.Random, n: int = 2, magnitude: int = 7) -> Image.Image:
    """The release's RandomAugment(N=2, M=7) ops, each applied with probability 0.5, in pillow."""
    level = magnitude / 10
    fill = (128, 128, 128)
    ops = {
        "Identity": lambda im: im,
        "AutoContrast": ImageOps.autocontrast,
        "Equalize": ImageOps.equalize,
        "Brightness": lambda im: ImageEnhance.Brightness(im).enhance(level * 1.8 + 0.1),
        "Sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(level * 1.8 + 0.1),
        "ShearX": lambda im: im.transform(im.size, Image.AFFINE, (1, _signed(level * 0.3, rng), 0, 0, 1, 0), fillcolor=fill),
        "ShearY": lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, _signed(level * 0.3, rng), 1, 0), fillcolor=fill),
        "TranslateX": lambda im: im.transform(im.size, Image.AFFINE, (1, 0, _signed(level * 10, rng), 0, 1, 0), fillcolor=fill),
        "TranslateY": lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, _signed(level * 10, rng)), fillcolor=fill),
        "Rotate": lambda im: im.rotate(_signed(level * 30, rng), fillcolor=fill),
    }  # fmt: skip
    for name in rng.sample(sorted(ops), n):
        if rng.random() < 0.5:
            image = ops[name](image)
    return image


def clean_text(text: str, max_words: int = 30) -> str:
    """The release's ``pre_caption``/``pre_question``: lowercase, strip ``,.'!?"()*#:;~``, ``-``/``/`` to spaces,
    collapse spaces, keep ``max_words`` words. (The release skips it for VQA questions and COCO captions.)"""
    text = re.sub(r"([,.'!?\"()*#:;~])", "", text.lower())
    text = re.sub(r"\s{2,}", " ", text.replace("-", " ").replace("/", " ")).strip()
    return " ".join(text.split(" ")[:max_words])


GROUNDING_BINS = 337  # floor(v * 336) for v in [0, 1]
GROUNDING_PREFIX = "[unused339]"


def normalised_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """A pixel box ``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)`` as fractions of the image (the release's targets)."""
    x1, y1, x2, y2 = box
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def box_to_tokens(box: Sequence[float], width: int, height: int) -> list[str]:
    """A pixel box ``(x1, y1, x2, y2)`` -> the release's 4 bin tokens of normalised ``(cx, cy, w, h)``."""
    values = normalised_box(box, width, height)
    bins = [min(max(int(np.floor(v * (GROUNDING_BINS - 1))), 0), GROUNDING_BINS - 1) for v in values]
    return [f"[unused{340 + b}]" for b in bins]


def tokens_to_box(tokens: Sequence[str], width: int, height: int) -> tuple[float, float, float, float]:
    """Inverse of :func:`box_to_tokens` (bin -> its value), as a pixel box ``(x1, y1, x2, y2)``."""
    cx, cy, w, h = (int(re.fullmatch(r"\[unused(\d+)\]", t).group(1)) - 340 for t in tokens)
    cx, cy, w, h = (v / (GROUNDING_BINS - 1) for v in (cx, cy, w, h))
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


class MPlugProcessor:
    """Pixels and token ids for mPLUG: ``images(...)`` -> ``[B, 3, R, R]``, ``text(...)`` -> ids and mask.

    ``train=True`` applies RandomResizedCrop(``scale``) + horizontal flip + RandomAugment, seeded by ``seed``.
    """

    def __init__(
        self, tokenizer, image_size: int = 384, *, scale=(0.5, 1.0), seed: int = 0, max_pixels=DEFAULT_MAX_PIXELS
    ):
        self.tokenizer, self.image_size, self.scale = tokenizer, image_size, tuple(scale)
        self.max_pixels, self.rng = max_pixels, random.Random(seed)
        self.cls_id, self.sep_id = (tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]"))
        self.pad_id = tokenizer.convert_tokens_to_ids("[PAD]")

    def image(self, source, *, train: bool = False) -> torch.Tensor:
        image = load_image(source, max_pixels=self.max_pixels)
        if train:
            image = random_resized_crop(image, self.image_size, self.scale, self.rng)
            if self.rng.random() < 0.5:
                image = ImageOps.mirror(image)
            image = random_augment(image, self.rng)
        else:
            image = image.resize((self.image_size, self.image_size), Image.BICUBIC)
        return to_tensor(image)

    def images(self, sources: Sequence, *, train: bool = False) -> torch.Tensor:
        return torch.stack([self.image(s, train=train) for s in sources])

    def ids(self, text: str, *, eos: bool = False, max_length: int | None = None) -> list[int]:
        """``[CLS] X`` (the release's single-sequence template has no [SEP]); ``eos`` appends [SEP] as the
        release appends the string ``" [SEP]"`` to decoder targets."""
        ids = [self.cls_id, *self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(text))]
        if max_length is not None:
            ids = ids[: max_length - (1 if eos else 0)]
        return ids + [self.sep_id] if eos else ids

    def text(self, texts: Sequence[str], *, eos: bool = False, max_length: int | None = None):
        """Padded ``(input_ids, attention_mask)`` ``[B, T]``."""
        rows = [self.ids(t, eos=eos, max_length=max_length) for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        return ids, mask

    def decode(self, sequences: torch.Tensor) -> list[str]:
        """Generated ids -> text, stopping at [SEP], special tokens removed."""
        out = []
        for row in sequences.tolist():
            if self.sep_id in row[1:]:
                row = row[: row.index(self.sep_id, 1)]
            out.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return out
