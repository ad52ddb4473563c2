"""Tiny GLUE/CLUE task folders in each benchmark's real file layout, and a tiny pre-trained StructBERT folder.

A uniquely named module rather than a test file: every package's tests folder is on sys.path in one pytest run,
so ``from test_finetuning import ...`` could find another package's file of that name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from alicemind.core.data import get_task
from alicemind.structbert import StructBertConfig, StructBertForPreTraining
from alicemind.structbert.pretraining import train_wordpiece_vocab
from alicemind.structbert.tokenization import StructBertTokenizer

WORDS = "the cat dog sat ran on mat hill good bad red blue big small happy sad 猫 狗 在 山 上 好 坏".split()
N_ROWS = 8
GLUE = ["cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli"]
CLUE = ["afqmc", "tnews", "iflytek", "cmnli", "ocnli", "csl", "cluewsc2020"]


def _text(rng: np.random.Generator, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS, size=n))


def _label(task: str, i: int, rng: np.random.Generator) -> str:
    spec = get_task(task)
    if spec.is_regression:
        return f"{rng.uniform(0, 5):.2f}"
    return spec.labels[i % min(len(spec.labels), 3)]


def _tsv_rows(task: str, split: str, rng) -> tuple[str | None, list[list[str]]]:
    """(header, rows) in each GLUE file's real column layout."""
    test = split.startswith("test")
    rows = []
    for i in range(N_ROWS):
        a, b, y = _text(rng), _text(rng), _label(task, i, rng)
        rows.append(
            {
                "cola": [str(i), a] if test else ["src", y, "*", a],
                "sst-2": [str(i), a] if test else [a, y],
                "mrpc": [str(i), "1", "2", a, b] if test else [y, "1", "2", a, b],
                "sts-b": [str(i), "g", "f", "y", "o", "s1", "s2", a, b] + ([] if test else [y]),
                "qqp": [str(i), a, b] if test else [str(i), "1", "2", a, b, y],
                "mnli": [str(i), "p", "q", "g", "x", "x", "x", "x", a, b] + ([] if test else ["l1", y]),
                "qnli": [str(i), a, b] + ([] if test else [y]),
                "rte": [str(i), a, b] + ([] if test else [y]),
                "wnli": [str(i), a, b] + ([] if test else [y]),
            }[task]
        )
    width = len(rows[0])
    header = None if (task == "cola" and not test) else "\t".join(f"h{k}" for k in range(width))
    return header, rows


def _clue_row(task: str, i: int, split: str, rng) -> dict:
    a, b = _text(rng), _text(rng)
    row = {
        "afqmc": {"sentence1": a, "sentence2": b},
        "cmnli": {"sentence1": a, "sentence2": b},
        "ocnli": {"sentence1": a, "sentence2": b},
        "tnews": {"sentence": a, "keywords": b},
        "iflytek": {"sentence": a},
        "csl": {"abst": a, "keyword": b.split()[:3]},
        "cluewsc2020": {
            "text": "猫在山上好",
            "target": {"span1_index": 0, "span1_text": "猫", "span2_index": 3, "span2_text": "好"},
        },  # fmt: skip
    }[task]
    row["id"] = i
    if not split.startswith("test"):
        row["label"] = _label(task, i, rng)
    return row


def write_task(root: Path, task: str, seed: int = 0) -> Path:
    """A tiny copy of ``task``'s folder (train/dev/test files in the benchmark's layout) under ``root``."""
    spec, rng = get_task(task), np.random.default_rng(seed)
    folder = root / task.upper()
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in spec.files.items():
        if split == "ax":
            continue
        name = names if isinstance(names, str) else names[0]
        if spec.format == "tsv":
            header, rows = _tsv_rows(task, split, rng)
            lines = ([header] if header else []) + ["\t".join(r) for r in rows]
            (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            rows = [_clue_row(task, i, split, rng) for i in range(N_ROWS)]
            (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return folder


def tiny_checkpoint(root: Path, **config) -> Path:
    """A random tiny pre-trained StructBERT folder with a WordPiece vocab learnt from the fixture words."""
    root.mkdir(parents=True, exist_ok=True)
    vocab = train_wordpiece_vocab([[" ".join(WORDS)] * 3], 120, root / "vocab.txt")
    tokenizer = StructBertTokenizer.from_vocab_file(vocab)
    values = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)  # fmt: skip
    torch.manual_seed(0)
    model = StructBertForPreTraining(StructBertConfig.from_preset("structbert.tiny", **{**values, **config}))
    model.save_pretrained(root / "ckpt")
    tokenizer.save_pretrained(root / "ckpt")
    return root / "ckpt"
