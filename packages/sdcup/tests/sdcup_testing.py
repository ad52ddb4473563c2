"""Test helpers: a tiny vocabulary, UER checkpoints with the released key names, UER's forward written from its
formulas, and a generated table/question set."""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("空列城市价格年份名称是多少的哪个在最高低大于小于和或")
WORDS = ["what", "is", "the", "of", "name", "city", "price", "year", "which", "has", "in", "how", "many", "with",
         "above", "below", "and", "drop", "table", "t", "'", ";", "-", "?", "alpha", "beta", "gamma", "delta",
         "paris", "rome", "oslo", "lima", "count", "average", "max", "rows"]  # fmt: skip
DIGITS = [str(i) for i in range(10)] + [f"##{i}" for i in range(10)] + ["10", "20", "30", "50"]


def write_vocab(folder: Path) -> Path:
    """A BERT vocab.txt over the characters and words the tests use."""
    path = Path(folder) / "vocab.txt"
    tokens = list(dict.fromkeys(SPECIALS + CHARS + WORDS + DIGITS))
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def uer_state_dict(vocab: int, hidden: int, layers: int, ffn: int, *, seed: int = 0, dtype=torch.float32) -> dict:
    """Random weights under the released UER names (bare ``BertEncoderModel`` keys plus ``target.*``)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.1):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    sd = {
        "embedding.word_embedding.weight": rnd(vocab, hidden),
        "embedding.position_embedding.weight": rnd(512, hidden),
        "embedding.segment_embedding.weight": rnd(3, hidden),
        "embedding.layer_norm.gamma": 1 + rnd(hidden),
        "embedding.layer_norm.beta": rnd(hidden),
    }
    for i in range(layers):
        p = f"encoder.transformer.{i}."
        for j in range(3):
            sd[f"{p}self_attn.linear_layers.{j}.weight"] = rnd(hidden, hidden)
            sd[f"{p}self_attn.linear_layers.{j}.bias"] = rnd(hidden)
        sd[f"{p}self_attn.final_linear.weight"], sd[f"{p}self_attn.final_linear.bias"] = (
            rnd(hidden, hidden),
            rnd(hidden),
        )
        sd[f"{p}feed_forward.linear_1.weight"], sd[f"{p}feed_forward.linear_1.bias"] = rnd(ffn, hidden), rnd(ffn)
        sd[f"{p}feed_forward.linear_2.weight"], sd[f"{p}feed_forward.linear_2.bias"] = rnd(hidden, ffn), rnd(hidden)
        for n in (1, 2):
            sd[f"{p}layer_norm_{n}.gamma"], sd[f"{p}layer_norm_{n}.beta"] = 1 + rnd(hidden), rnd(hidden)
    sd["target.mlm_linear_1.weight"], sd["target.mlm_linear_1.bias"] = rnd(hidden, hidden), rnd(hidden)
    sd["target.layer_norm.gamma"], sd["target.layer_norm.beta"] = 1 + rnd(hidden), rnd(hidden)
    sd["target.mlm_linear_2.weight"], sd["target.mlm_linear_2.bias"] = rnd(vocab, hidden), rnd(vocab)
    sd["target.nsp_linear_1.weight"], sd["target.nsp_linear_1.bias"] = rnd(hidden, hidden), rnd(hidden)
    sd["target.nsp_linear_2.weight"], sd["target.nsp_linear_2.bias"] = rnd(2, hidden), rnd(2)
    return sd


def uer_reference_forward(sd: dict, ids: torch.Tensor, seg: torch.Tensor, heads: int, eps: float = 1e-6):
    """UER BERT written from its formulas: population std, eps added to the std, mask -10000 where seg == 0."""

    def norm(x, name):
        mean = x.mean(-1, keepdim=True)
        std = ((x - mean) ** 2).mean(-1, keepdim=True).sqrt()
        return sd[name + ".gamma"] * (x - mean) / (std + eps) + sd[name + ".beta"]

    def linear(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    b, n = ids.shape
    x = sd["embedding.word_embedding.weight"][ids] + sd["embedding.position_embedding.weight"][:n][None]
    x = norm(x + sd["embedding.segment_embedding.weight"][seg], "embedding.layer_norm")
    mask = (1.0 - (seg > 0).to(x.dtype))[:, None, None, :] * -10000.0
    hidden = x.shape[-1]
    d = hidden // heads
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.transformer."))
    for i in range(layers):
        p = f"encoder.transformer.{i}."
        q, k, v = (linear(x, f"{p}self_attn.linear_layers.{j}").view(b, n, heads, d).transpose(1, 2) for j in range(3))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + mask, -1)
        ctx = (probs @ v).transpose(1, 2).reshape(b, n, hidden)
        inter = norm(linear(ctx, f"{p}self_attn.final_linear") + x, f"{p}layer_norm_1")
        h = linear(inter, f"{p}feed_forward.linear_1")
        h = h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
        x = norm(linear(h, f"{p}feed_forward.linear_2") + inter, f"{p}layer_norm_2")
    return x


CITIES = ["paris", "rome", "oslo", "lima"]
NAMES = ["alpha", "beta", "gamma", "delta"]


def generated_tables(count: int = 3, seed: int = 0):
    """Small tables: name (text), city (text), price (real), year (real)."""
    from alicemind.sdcup import Table

    rng = random.Random(seed)
    tables = []
    for t in range(count):
        rows = []
        for name in rng.sample(NAMES, 4):
            rows.append([name, rng.choice(CITIES), float(rng.choice([10, 20, 30, 50])), float(rng.randint(1, 9))])
        tables.append(Table(["name", "city", "price", "year"], ["text", "text", "real", "real"], rows, f"g{t}"))
    return tables


def generated_questions(tables, count: int, seed: int):
    """Templated English questions with their SQL: select a column of a named row, or count rows of a city."""
    from alicemind.sdcup import SqlQuery, TableQuestion

    rng = random.Random(seed)
    out = []
    for i in range(count):
        table = rng.choice(tables)
        row = rng.choice(table.rows)
        kind = rng.randrange(3)
        if kind == 0:
            col = rng.choice([1, 2, 3])
            text, sql = f"what is the {table.header[col]} of {row[0]}", SqlQuery([col], [0], [(0, 2, row[0])], 1)
        elif kind == 1:
            text, sql = f"how many rows in {row[1]}", SqlQuery([0], [4], [(1, 2, row[1])], 1)
        else:
            text, sql = f"which name has city {row[1]}", SqlQuery([0], [0], [(1, 2, row[1])], 1)
        out.append(TableQuestion(text, table, None, sql, f"q{i}"))
    return out


def write_dataset(folder: Path, *, train: int = 120, dev: int = 30, seed: int = 0) -> dict[str, Path]:
    """Tables JSONL plus CBANK-format train/dev JSONL of generated questions; returns the paths."""
    import json

    folder = Path(folder)
    tables = generated_tables(3, seed)
    paths = {"tables": folder / "tables.jsonl", "train_file": folder / "train.jsonl", "dev_file": folder / "dev.jsonl"}
    paths["tables"].write_text("".join(json.dumps({"id": t.table_id, "header": t.header, "types": t.types,
                                                   "rows": t.rows}) + "\n" for t in tables))  # fmt: skip
    for key, n, s in (("train_file", train, seed + 1), ("dev_file", dev, seed + 2)):
        lines = [json.dumps({"sql_id": q.example_id, "table_id": q.table.table_id, "question": q.question,
                             "sql": q.sql.to_dict()}) for q in generated_questions(tables, n, s)]  # fmt: skip
        paths[key].write_text("\n".join(lines) + "\n")
    return paths
