"""Helpers of the mPLUG tests: a tiny vocabulary, generated coloured-shape images with captions, tiny models,
and a synthetic checkpoint in the exact released layout."""

from __future__ import annotations

import random

import torch
from PIL import Image, ImageDraw

from alicemind.core.tokenization import WordPieceTokenizer
from alicemind.mplug import MPlugConfig, MPlugProcessor
from alicemind.mplug.convert import ours_to_release

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 230), "yellow": (240, 220, 20)}
SHAPES = ("circle", "square", "triangle")
WORDS = ["a", "of", "what", "color", "is", "the", "shape", "?", "picture", *COLOURS, *SHAPES]
SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]


def tokenizer(with_box_tokens: bool = False) -> WordPieceTokenizer:
    tokens = SPECIALS + WORDS
    if with_box_tokens:
        tokens += [f"[unused{i}]" for i in range(339, 677)]
    return WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(tokens)})


def tiny_config(**overrides) -> MPlugConfig:
    return MPlugConfig.from_preset("mplug.test", **overrides)


def release_overrides() -> dict:
    """What a tiny file's shapes cannot tell: head counts, fusion layers run, the stride, special token ids."""
    c = tiny_config()
    keys = ("stride_layer", "num_attention_heads", "vision_overrides", "fusion_layers", "bos_token_id",
            "eos_token_id", "mask_token_id", "vision_attention_dropout")  # fmt: skip
    return {k: getattr(c, k) for k in keys}


def processor(tok=None) -> MPlugProcessor:
    return MPlugProcessor(tok or tokenizer(), image_size=32)


def draw_shape(colour: str, shape: str, rng: random.Random, size: int = 32) -> Image.Image:
    """A shape of one colour on a grey background, at a random place and size."""
    image = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    side = rng.randint(size - 10, size - 4)  # large and near the centre: a 4x4-patch tower can tell the shapes
    x, y = rng.randint(2, size - side - 2), rng.randint(2, size - side - 2)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse((x, y, x + side, y + side), fill=fill)
    elif shape == "square":
        draw.rectangle((x, y, x + side, y + side), fill=fill)
    else:
        draw.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=fill)
    return image


def shape_dataset(n: int, seed: int):
    """``n`` (image, colour, shape, class index) tuples cycling through every colour-shape pair."""
    rng = random.Random(seed)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    out = []
    for i in range(n):
        colour, shape = pairs[i % len(pairs)]
        out.append((draw_shape(colour, shape, rng), colour, shape, pairs.index((colour, shape))))
    return out


def caption_batch(proc: MPlugProcessor, items):
    pixels = proc.images([im for im, *_ in items])
    ids, mask = proc.text([f"a {c} {s}" for _, c, s, _ in items], eos=True)
    idx = torch.tensor([k for *_, k in items])
    return pixels, ids, mask, idx


def release_state_dict(model, *, grid_from: int | None = None, wrap: str = "model") -> dict:
    """``model``'s weights as the release writes them: encoders MLM-wrapped (``.bert.``/``.fusion.``), dead fusion
    layers 0..k, the fusion embeddings, CLIP's text tower and ``proj``, ``position_ids`` buffers, the transformers
    ``cls.predictions.decoder.bias`` alias, and optionally the position table at another grid."""
    config = model.config
    state = ours_to_release(model.state_dict(), config)
    g = torch.Generator().manual_seed(5)
    first = config.num_hidden_layers - config.fusion_layers
    if hasattr(model, "fusion_encoder"):
        layer0 = {k: v for k, v in state.items() if k.startswith(f"fusion_encoder.fusion.encoder.layer.{first}.")}
        for i in range(first):
            for k, v in layer0.items():
                state[k.replace(f".layer.{first}.", f".layer.{i}.")] = torch.randn(v.shape, generator=g)
        emb = {k: v for k, v in state.items() if k.startswith("text_encoder.bert.embeddings.")}
        for k, v in emb.items():
            state[k.replace("text_encoder.bert.", "fusion_encoder.fusion.")] = torch.randn(v.shape, generator=g)
    width = config.vision_width
    for tower in [t for t in ("visual_encoder", "visual_encoder_m") if f"{t}.visual.conv1.weight" in state]:
        state[f"{tower}.visual.proj"] = torch.randn(width, 8, generator=g)
        state[f"{tower}.positional_embedding"] = torch.randn(7, 16, generator=g)
        state[f"{tower}.token_embedding.weight"] = torch.randn(10, 16, generator=g)
        state[f"{tower}.transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(48, 16, generator=g)
        state[f"{tower}.ln_final.weight"] = torch.ones(16)
        state[f"{tower}.text_projection"] = torch.randn(16, 8, generator=g)
        state[f"{tower}.logit_scale"] = torch.tensor(4.6)
    if hasattr(model, "text_encoder"):
        state["text_encoder.bert.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
        state["text_encoder.cls.predictions.bias"] = torch.zeros(config.vocab_size)
    if hasattr(model, "text_decoder"):
        state["text_decoder.bert.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
        state["text_decoder.cls.predictions.decoder.bias"] = state["text_decoder.cls.predictions.bias"]
    if grid_from is not None:
        for tower in ("visual_encoder", "visual_encoder_m"):
            key = f"{tower}.visual.positional_embedding"
            if key in state:
                state[key] = torch.randn(grid_from * grid_from + 1, width, generator=g)
    return {wrap: state, "epoch": 3}
