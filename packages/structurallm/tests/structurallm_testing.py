"""Test helpers: a tiny RoBERTa-style BPE vocabulary, TF1 variables under the released names, FUNSD files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import pre_tokenizers

# A few merges so common words become single "Ġword" tokens (ids stay below the test preset's 300 rows).
WORDS = ["name", "date", "total", "form", "to", "from", "amount", "the", "of"]


def tiny_tokenizer(folder: Path):
    """RoBERTa specials 0-3, the 256 byte symbols, then merged pieces; saved as vocab.json + merges.txt."""
    from alicemind.structurallm import StructuralLMTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    merges = []
    for word in WORDS:
        piece = "Ġ"
        for ch in word:
            merges.append((piece, ch))
            piece += ch
            vocab.setdefault(piece, len(vocab))
    vocab["<mask>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    unique = list(dict.fromkeys(merges))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in unique))
    return StructuralLMTokenizer.from_files(folder / "vocab.json", folder / "merges.txt")


def released_variables(cfg, *, seed: int = 0, head: str | None = None) -> dict[str, np.ndarray]:
    """Random TF1 variables under the names of the released checkpoint (models-multimodal.md 2.4), with the
    extras a TF1 training run leaves (Adam slots, global_step); kernels [in, out]."""
    rng = np.random.default_rng(seed)
    h, ff = cfg.hidden_size, cfg.intermediate_size

    def rand(*shape):
        return (0.05 * rng.standard_normal(shape)).astype(np.float32)

    e = "bert/embeddings"
    out = {
        f"{e}/word_embeddings": rand(cfg.vocab_size, h),
        f"{e}/token_type_embeddings": rand(2, h),
        f"{e}/pos_x0_embeddings": rand(1001, h),
        f"{e}/pos_y0_embeddings": rand(1001, h),
        f"{e}/pos_x1_embeddings": rand(1001, h),
        f"{e}/pos_y1_embeddings": rand(1001, h),
        f"{e}/bbox_embeddings": rand(cfg.bbox_vocab_size, h),
        f"{e}/position_embeddings": rand(cfg.max_position_embeddings, h),
        f"{e}/LayerNorm/gamma": 1 + rand(h),
        f"{e}/LayerNorm/beta": rand(h),
        "bert/pooler/dense/kernel": rand(h, h),
        "bert/pooler/dense/bias": rand(h),
        "global_step": np.array(160000, dtype=np.int64),
    }
    for i in range(cfg.num_hidden_layers):
        p = f"bert/encoder/layer_{i}"
        for name, (n_in, n_out) in {"attention/self/query": (h, h), "attention/self/key": (h, h),
                                    "attention/self/value": (h, h), "attention/output/dense": (h, h),
                                    "intermediate/dense": (h, ff), "output/dense": (ff, h)}.items():  # fmt: skip
            out[f"{p}/{name}/kernel"] = rand(n_in, n_out)
            out[f"{p}/{name}/bias"] = rand(n_out)
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            out[f"{p}/{norm}/gamma"] = 1 + rand(h)
            out[f"{p}/{norm}/beta"] = rand(h)
    out["bert/encoder/layer_0/attention/self/query/kernel/adam_m"] = rand(h, h)
    out["bert/encoder/layer_0/attention/self/query/kernel/adam_v"] = rand(h, h)
    if head == "squad":
        out["cls/squad/output_weights"] = rand(cfg.num_labels, h)
        out["cls/squad/output_bias"] = rand(cfg.num_labels)
    return out


def funsd_annotation(entities: list[tuple[str, str, list[int]]]) -> dict:
    """A FUNSD ``{"form": [...]}`` with one entity per (label, text, box); word boxes split the entity box."""
    form = []
    for number, (label, text, box) in enumerate(entities):
        words = text.split()
        x0, y0, x1, y1 = box
        step = (x1 - x0) / len(words)
        form.append({
            "box": box, "text": text, "label": label, "id": number, "linking": [],
            "words": [{"box": [int(x0 + k * step), y0, int(x0 + (k + 1) * step), y1], "text": w}
                      for k, w in enumerate(words)],
        })  # fmt: skip
    return {"form": form}


# Synthetic pages whose words tell where their cell sits, so both MVLM and CPC are learnable from text.
AREAS = {"name": (60, 60), "date": (760, 60), "total": (760, 860), "amount": (60, 860)}


def synthetic_pages(count: int, seed: int = 0, *, jitter: int = 80) -> list[dict]:
    """JSONL rows ``{words, boxes, cells, page_size}``: four cells per page in shuffled reading order, each moved
    by up to ``jitter`` grid units."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words, boxes, cells = [], [], []
        order = list(AREAS)
        rng.shuffle(order)
        for cell, key in enumerate(order):
            x, y = AREAS[key]
            dx, dy = rng.randint(0, jitter), rng.randint(0, jitter)
            for k, word in enumerate([key, "of", "the", key]):
                words.append(word)
                boxes.append([2 * (x + dx + 20 * k), 2 * (y + dy), 2 * (x + dx + 20 * k + 18), 2 * (y + dy + 30)])
                cells.append(cell)
        rows.append({"words": words, "boxes": boxes, "cells": cells, "page_size": [2000, 2000]})
    return rows


def write_funsd_split(folder: Path, count: int, seed: int = 0) -> None:
    """FUNSD-format pages: a header at the top, question/answer pairs, an "other" cell; fixed wording per role."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = folder.parent / "images"  # FUNSD keeps each page image in ../images/<name>.png
    images.mkdir(exist_ok=True)
    for n in range(count):
        Image.new("L", (1000, 1000)).save(images / f"page_{n:03d}.png")
        y = rng.randint(100, 300)
        entities = [("header", "the form", [300, 20, 600, 60])]
        for _ in range(rng.randint(2, 3)):
            entities.append(("question", "name of", [50, y, 200, y + 30]))
            entities.append(("answer", "total amount", [260, y, 500, y + 30]))
            y += 90
        entities.append(("other", "date to", [600, 900, 700, 950]))
        (folder / f"page_{n:03d}.json").write_text(json.dumps(funsd_annotation(entities)))
