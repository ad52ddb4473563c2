"""Test helpers: a tiny vocabulary, release-layout checkpoints with the exact LXMERT/StructVBERT key names, TSV
feature files in the original format, and synthetic VQA data whose answers are decidable from the features."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import torch

from alicemind.structvbert import StructVBertConfig

WORDS = ["what", "is", "the", "color", "of", "it", "a", "cat", "dog", "red", "blue", "green", "shape", "round",
         "##s", "##ing", "there", "two", "man", "on", "left", "right", "image", "picture", "shows", "and", "in"]  # fmt: skip
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=32, visual_feat_dim=16, max_objects=8, num_object_labels=10,
            num_attribute_labels=6)  # fmt: skip
BERT_CONFIG = {k: TINY[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size", "max_position_embeddings")}  # fmt: skip
BERT_CONFIG.update(hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, type_vocab_size=2,
                   initializer_range=0.02)  # fmt: skip


def write_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokens = SPECIALS + WORDS
    tokens += [f"[unused{i}]" for i in range(TINY["vocab_size"] - len(tokens))]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return folder / "vocab.txt"


def tiny_config(**overrides) -> StructVBertConfig:
    return StructVBertConfig.from_dict({**TINY, **overrides})


def release_state_dict(num_answers: int = 7, seed: int = 0, *, gamma_beta: bool = False) -> dict[str, torch.Tensor]:
    """Random weights under the released pre-training file's key names (``bert.*``, ``cls.*``,
    ``obj_predict_head.*``, ``answer_head.logit_fc.*``); ``gamma_beta`` writes LayerNorms as the TF-era names."""
    g = torch.Generator().manual_seed(seed)
    h, f, inter, v = TINY["hidden_size"], TINY["visual_feat_dim"], TINY["intermediate_size"], TINY["vocab_size"]

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    def ln(prefix, size=h):
        w, b = ("gamma", "beta") if gamma_beta else ("weight", "bias")
        return {f"{prefix}.{w}": 1 + r(size), f"{prefix}.{b}": r(size)}

    def lin(prefix, out_dim, in_dim):
        return {f"{prefix}.weight": r(out_dim, in_dim), f"{prefix}.bias": r(out_dim)}

    s: dict[str, torch.Tensor] = {
        "bert.embeddings.word_embeddings.weight": r(v, h),
        "bert.embeddings.position_embeddings.weight": r(TINY["max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": r(2, h),
        **ln("bert.embeddings.LayerNorm"),
        **lin("bert.encoder.visn_fc.visn_fc", h, f),
        **ln("bert.encoder.visn_fc.visn_layer_norm"),
        **lin("bert.encoder.visn_fc.box_fc", h, 4),
        **ln("bert.encoder.visn_fc.box_layer_norm"),
        **lin("bert.pooler.dense", h, h),
    }
    for i in range(TINY["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            s.update(lin(f"{p}.attention.self.{name}", h, h))
        s.update(lin(f"{p}.attention.output.dense", h, h) | ln(f"{p}.attention.output.LayerNorm"))
        s.update(
            lin(f"{p}.intermediate.dense", inter, h) | lin(f"{p}.output.dense", h, inter) | ln(f"{p}.output.LayerNorm")
        )
    s.update(lin("cls.predictions.transform.dense", h, h) | ln("cls.predictions.transform.LayerNorm"))
    s["cls.predictions.bias"] = r(v)
    s["cls.predictions.decoder.weight"] = s["bert.embeddings.word_embeddings.weight"]
    s.update(lin("cls.seq_relationship", 2, h))
    s.update(lin("obj_predict_head.transform.dense", h, h) | ln("obj_predict_head.transform.LayerNorm"))
    for name, size in (("obj", TINY["num_object_labels"]), ("attr", TINY["num_attribute_labels"]), ("feat", f)):
        s.update(lin(f"obj_predict_head.decoder_dict.{name}", size, h))
    s.update(
        lin("answer_head.logit_fc.0", 2 * h, h)
        | ln("answer_head.logit_fc.2", 2 * h)
        | lin("answer_head.logit_fc.3", num_answers, 2 * h)
    )
    return s


def write_release(folder: Path, state: dict[str, torch.Tensor], name: str = "pytorch_model.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / name)
    (folder / "bert_config.json").write_text(json.dumps(BERT_CONFIG))
    write_vocab(folder)
    return folder


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def tsv_row(img_id: str, feats: np.ndarray, boxes: np.ndarray, img_h: int, img_w: int, *, conf=None, objects=None,
            attrs=None) -> str:  # fmt: skip
    """One row of the LXMERT obj TSV: ``img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf,
    num_boxes, boxes, features`` with base64 arrays."""
    n = len(boxes)
    conf = np.linspace(0.9, 0.1, n).astype(np.float32) if conf is None else np.asarray(conf, np.float32)
    objects = np.arange(n, dtype=np.int64) % 10 if objects is None else np.asarray(objects, np.int64)
    attrs = np.arange(n, dtype=np.int64) % 6 if attrs is None else np.asarray(attrs, np.int64)
    fields = [img_id, str(img_h), str(img_w), b64(objects), b64(conf), b64(attrs), b64(conf), str(n),
              b64(boxes.astype(np.float32)), b64(feats.astype(np.float32))]  # fmt: skip
    return "\t".join(fields)


def random_image(rng: np.random.Generator, n: int, dim: int = 16, size=(60, 80)):
    h, w = size
    x1 = rng.uniform(0, w / 2, n)
    y1 = rng.uniform(0, h / 2, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(1, w / 2, n), y1 + rng.uniform(1, h / 2, n)], 1).astype(np.float32)
    return rng.standard_normal((n, dim)).astype(np.float32), boxes, h, w


def write_tsv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


COLORS = ["red", "blue", "green"]


def synthetic_vqa(folder: Path, num_images: int = 48, seed: int = 0, dim: int = 16) -> Path:
    """Images whose regions carry a color code in the features; the question asks for it; the answer follows
    from the features alone. Writes features.tsv, train.json, valid.json, vocab.txt."""
    rng = np.random.default_rng(seed)
    rows, examples = [], []
    for i in range(num_images):
        color = i % len(COLORS)
        n = int(rng.integers(3, 7))
        feats, boxes, h, w = random_image(rng, n, dim)
        feats[:, color] += 5.0  # the decisive signal
        rows.append(tsv_row(f"img{i}", feats, boxes, h, w, objects=np.full(n, color)))
        answer = COLORS[color]
        label = {answer: 1.0, COLORS[(color + 1) % 3]: 0.3} if i % 4 == 0 else {answer: 1.0}
        examples.append({"img_id": f"img{i}", "question_id": i, "sent": "what is the color of it", "label": label,
                         "question_type": "what color", "answer_type": "other"})  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_tsv(folder / "features.tsv", rows)
    split = num_images * 3 // 4
    (folder / "train.json").write_text(json.dumps(examples[:split]))
    (folder / "valid.json").write_text(json.dumps(examples[split:]))
    write_vocab(folder)
    return folder
