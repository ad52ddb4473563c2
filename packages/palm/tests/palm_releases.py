"""Tiny synthetic checkpoints in the exact layouts of the two PALM releases (key names: reference
models-language.md section 2.6), written the way the originals were (torch.save of the state dict / of PreSumm's
``{'model', 'opt', 'optims'}`` dict with pickled argparse and optimizer objects)."""

from __future__ import annotations

import argparse
import json
import sys
import types
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SofaDims:
    """Sizes of the synthetic Chinese release."""

    V: int = 48
    H: int = 16
    HEADS: int = 4
    FF: int = 32
    L_ENC: int = 2
    L_DEC: int = 2
    POS: int = 40
    TYPES: int = 3
    EPS: float = 1e-12
    REAL_VOCAB: int = 40


ZH = SofaDims()


def sofa_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``palm_model.pt`` state dict with sofa's exact key names (``decoder_weight`` shares the word table)."""
    V, H, FF, L_ENC, L_DEC, POS, TYPES = ZH.V, ZH.H, ZH.FF, ZH.L_ENC, ZH.L_DEC, ZH.POS, ZH.TYPES
    g = torch.Generator().manual_seed(seed)

    def t(*shape):
        return torch.randn(*shape, generator=g) * 0.3

    sd = {}

    def linear(name, out, inp):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = t(out, inp), t(out)

    def norm(name):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = 1 + t(H), t(H)

    sd["bert.embeddings.word_embeddings.weight"] = t(V, H)
    sd["bert.embeddings.position_embeddings.weight"] = t(POS, H)
    sd["bert.embeddings.token_type_embeddings.weight"] = t(TYPES, H)
    norm("bert.embeddings.LayerNorm")
    for i in range(L_ENC):
        p = f"bert.encoder.layer.{i}"
        norm(f"{p}.attention.LayerNorm")
        linear(f"{p}.attention.self.query_key_value", 3 * H, H)
        linear(f"{p}.attention.output.dense", H, H)
        norm(f"{p}.LayerNorm")
        linear(f"{p}.intermediate.dense", FF, H)
        linear(f"{p}.output.dense", H, FF)
    norm("bert.encoder.LayerNorm")
    linear("bert.pooler.dense", H, H)
    linear("cls.predictions.transform.dense", H, H)
    norm("cls.predictions.transform.LayerNorm")
    sd["cls.predictions.bias"] = t(V)
    sd["cls.predictions.decoder_weight"] = sd["bert.embeddings.word_embeddings.weight"]  # one parameter in sofa
    linear("cls.seq_relationship", 3, H)
    for j in range(L_DEC):
        p = f"decoder.decoder.layer.{j}"
        linear(f"{p}.attention.query_key_value", 3 * H, H)
        linear(f"{p}.attention.dense", H, H)
        linear(f"{p}.cross_attention.query", H, H)
        linear(f"{p}.cross_attention.key_value", 2 * H, H)
        linear(f"{p}.cross_attention.dense", H, H)
        for n in ("input_layernorm", "post_attention_layernorm", "post_cross_attention_layernorm"):
            norm(f"{p}.{n}")
        linear(f"{p}.intermediate", FF, H)
        linear(f"{p}.output", H, FF)
    norm("decoder.decoder.final_layernorm")
    return sd


def write_sofa_folder(path, sd) -> None:
    """sofa's folder: ``palm_model.pt``, its ``config.json`` (training fields included) and a ``vocab.txt``."""
    V, H, HEADS, FF, L_ENC, L_DEC, POS, TYPES, EPS = (
        ZH.V, ZH.H, ZH.HEADS, ZH.FF, ZH.L_ENC, ZH.L_DEC, ZH.POS, ZH.TYPES, ZH.EPS
    )  # fmt: skip
    path.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path / "palm_model.pt")
    config = dict(
        vocab_size=V, hidden_size=H, num_hidden_layers=L_ENC, num_attention_heads=HEADS, intermediate_size=FF,
        hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=POS,
        type_vocab_size=TYPES, initializer_range=0.00707, layernorm_epsilon=EPS, pre_ln=True, dec_hidden_layers=L_DEC,
        attn_separate=False, lr_decay_style="linear", weight_decay=1e-2, clip_grad=1.0, warmup=0.01, model_type="palm",
    )  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    (path / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(ZH.REAL_VOCAB)) + "\n")


@dataclass(frozen=True)
class PresummDims:
    """Sizes of the synthetic English release."""

    V: int = 50
    H: int = 16
    HEADS: int = 4
    FF: int = 32
    L_ENC: int = 2
    POS: int = 30
    D: int = 16
    DHEADS: int = 2
    DFF: int = 24
    L_DEC: int = 2
    PAD: int = 1


EN = PresummDims()


def presumm_state_dict(p_gen: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """PALM EN's ``checkpoint['model']`` with PreSumm's exact key names, mask buffers and tied generator."""
    V, H, FF, L_ENC, POS, D, DFF, L_DEC = EN.V, EN.H, EN.FF, EN.L_ENC, EN.POS, EN.D, EN.DFF, EN.L_DEC
    g = torch.Generator().manual_seed(seed)

    def t(*shape):
        return torch.randn(*shape, generator=g) * 0.3

    sd = {}

    def linear(name, out, inp):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = t(out, inp), t(out)

    def norm(name, n):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = 1 + t(n), t(n)

    e = "bert.model.embeddings"
    sd[f"{e}.word_embeddings.weight"] = t(V, H)
    sd[f"{e}.position_embeddings.weight"] = t(POS, H)
    sd[f"{e}.token_type_embeddings.weight"] = t(1, H)
    norm(f"{e}.LayerNorm", H)
    for i in range(L_ENC):
        p = f"bert.model.encoder.layer.{i}"
        for n in ("query", "key", "value"):
            linear(f"{p}.attention.self.{n}", H, H)
        linear(f"{p}.attention.output.dense", H, H)
        norm(f"{p}.attention.output.LayerNorm", H)
        linear(f"{p}.intermediate.dense", FF, H)
        linear(f"{p}.output.dense", H, FF)
        norm(f"{p}.output.LayerNorm", H)
    linear("bert.model.pooler.dense", H, H)
    sd["decoder.embeddings.weight"] = t(V, D)
    sd["decoder.pos_emb.pe"] = t(1, 64, D)  # a buffer in the release (5000 rows there)
    for j in range(L_DEC):
        p = f"decoder.transformer_layers.{j}"
        for attn in ("self_attn", "context_attn"):
            for n in ("linear_keys", "linear_values", "linear_query", "final_linear"):
                linear(f"{p}.{attn}.{n}", D, D if attn == "self_attn" or n in ("linear_query", "final_linear") else H)
        linear(f"{p}.feed_forward.w_1", DFF, D)
        linear(f"{p}.feed_forward.w_2", D, DFF)
        norm(f"{p}.feed_forward.layer_norm", D)
        norm(f"{p}.layer_norm_1", D)
        norm(f"{p}.layer_norm_2", D)
        sd[f"{p}.mask"] = torch.triu(torch.ones(1, 64, 64, dtype=torch.uint8), 1)  # 1x5000x5000 in the release
    norm("decoder.layer_norm", D)
    head = "generator.gen_proj" if p_gen else "generator.0"
    sd[f"{head}.weight"] = sd["decoder.embeddings.weight"]  # tied in the release
    sd[f"{head}.bias"] = t(V)
    if p_gen:
        linear("generator.prob_proj", 1, H + D)
    return sd


def write_presumm_release(folder, sd, *, legacy: bool = False) -> None:
    """torch.save the PALM EN layout, pickling PreSumm's optimizer wrapper and torch.optim objects whole."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = types.ModuleType("models.optimizers")

    class Optimizer:  # stands in for PreSumm's models.optimizers.Optimizer
        def __init__(self, inner):
            self.method, self.learning_rate, self.optimizer, self._step = "adam", 2e-3, inner, 1

    Optimizer.__module__, Optimizer.__qualname__ = "models.optimizers", "Optimizer"
    fake.Optimizer = Optimizer
    param = torch.nn.Parameter(torch.ones(3))
    adam = torch.optim.Adam([param], lr=1e-3)
    param.grad = torch.ones(3)
    adam.step()
    opt = argparse.Namespace(encoder="roberta", dec_layers=EN.L_DEC, dec_hidden_size=EN.D, dec_ff_size=EN.DFF,
                             dec_dropout=0.2, max_pos=EN.POS - 2, p_gen="generator.prob_proj.weight" in sd)  # fmt: skip
    sys.modules["models"], sys.modules["models.optimizers"] = types.ModuleType("models"), fake
    try:
        torch.save({"model": sd, "opt": opt, "optims": [Optimizer(adam), Optimizer(adam)]},
                   folder / "model_palm_en_base.pt", _use_new_zipfile_serialization=not legacy)  # fmt: skip
    finally:  # the reader must work without these modules
        del sys.modules["models"], sys.modules["models.optimizers"]
    (folder / "roberta-base").mkdir(exist_ok=True)
    (folder / "roberta-base" / "config.json").write_text(
        json.dumps(
            {"num_attention_heads": EN.HEADS, "layer_norm_eps": 1e-5, "hidden_act": "gelu", "pad_token_id": EN.PAD}
        )
    )
