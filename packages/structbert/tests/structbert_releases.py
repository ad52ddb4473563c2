"""Tiny files in the released StructBERT ``en_model`` layout (key names, gamma/beta), shared by the tests.

A uniquely named module rather than a test file: every package's tests folder is on sys.path in one pytest run,
so ``from test_convert import ...`` could find another package's file of that name.
"""

import json

import torch

TINY = dict(
    vocab_size=120,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    type_vocab_size=2,
)


def release_state_dict(seed=0, layers=2, hidden=32, ffn=64, vocab=120, positions=40):
    """The key names of the original ``en_model`` (pytorch-pretrained-bert BertModel, LayerNorm gamma/beta)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.05

    sd = {
        "embeddings.word_embeddings.weight": r(vocab, hidden),
        "embeddings.position_embeddings.weight": r(positions, hidden),
        "embeddings.token_type_embeddings.weight": r(2, hidden),
        "embeddings.LayerNorm.gamma": 1 + r(hidden),
        "embeddings.LayerNorm.beta": r(hidden),
        "pooler.dense.weight": r(hidden, hidden),
        "pooler.dense.bias": r(hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            sd[p + f"attention.self.{name}.weight"] = r(hidden, hidden)
            sd[p + f"attention.self.{name}.bias"] = r(hidden)
        sd[p + "attention.output.dense.weight"] = r(hidden, hidden)
        sd[p + "attention.output.dense.bias"] = r(hidden)
        sd[p + "attention.output.LayerNorm.gamma"] = 1 + r(hidden)
        sd[p + "attention.output.LayerNorm.beta"] = r(hidden)
        sd[p + "intermediate.dense.weight"] = r(ffn, hidden)
        sd[p + "intermediate.dense.bias"] = r(ffn)
        sd[p + "output.dense.weight"] = r(hidden, ffn)
        sd[p + "output.dense.bias"] = r(hidden)
        sd[p + "output.LayerNorm.gamma"] = 1 + r(hidden)
        sd[p + "output.LayerNorm.beta"] = r(hidden)
    return sd


def hf_names(sd):
    return {
        k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
        for k, v in sd.items()
    }


def write_config(folder, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**TINY, "hidden_act": "gelu", "attention_type": "self", **extra}))
