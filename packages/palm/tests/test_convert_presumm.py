"""The English release: a synthetic ``{'model', 'opt', 'optims'}`` pickle in the exact PreSumm layout (argparse
Namespace and pickled optimizer objects included) is read without importing their code, every key is accounted
for, and outputs equal an independent re-statement of PreSumm's AbsSummarizer (plain and pointer-generator)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from alicemind.core.checkpoint import UnsafeCheckpointError
from alicemind.palm.convert import convert_checkpoint, load_model, read_any_checkpoint
from alicemind.palm.model import PalmForConditionalGeneration

V, H, HEADS, FF, L_ENC, POS, D, DHEADS, DFF, L_DEC, PAD = 50, 16, 4, 32, 2, 30, 16, 2, 24, 2, 1


def presumm_state_dict(p_gen: bool, seed: int = 0) -> dict[str, torch.Tensor]:
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


def write_release(folder, sd, *, legacy: bool = False) -> None:
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
    opt = argparse.Namespace(encoder="roberta", dec_layers=L_DEC, dec_hidden_size=D, dec_ff_size=DFF,
                             dec_dropout=0.2, max_pos=POS - 2, p_gen="generator.prob_proj.weight" in sd)  # fmt: skip
    sys.modules["models"], sys.modules["models.optimizers"] = types.ModuleType("models"), fake
    try:
        torch.save({"model": sd, "opt": opt, "optims": [Optimizer(adam), Optimizer(adam)]},
                   folder / "model_palm_en_base.pt", _use_new_zipfile_serialization=not legacy)  # fmt: skip
    finally:  # the reader must work without these modules
        del sys.modules["models"], sys.modules["models.optimizers"]
    (folder / "roberta-base").mkdir(exist_ok=True)
    (folder / "roberta-base" / "config.json").write_text(
        json.dumps({"num_attention_heads": HEADS, "layer_norm_eps": 1e-5, "hidden_act": "gelu", "pad_token_id": PAD})
    )


# -- PreSumm's forward, re-stated as plain tensor math --------------------------------------------------------
def _lin(sd, x, name):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def _ln(sd, x, name, eps):
    return F.layer_norm(x, (x.shape[-1],), sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def _mha(q, k, v, heads, blocked):
    d = q.shape[-1] // heads
    q, k, v = (x.unflatten(-1, (heads, d)).transpose(1, 2) for x in (q, k, v))
    probs = (torch.matmul(q / math.sqrt(d), k.transpose(-1, -2))).masked_fill(blocked, -1e18).softmax(-1)
    return torch.matmul(probs, v).transpose(1, 2).flatten(-2), probs


def presumm_log_probs(sd, ids, mask, dec):
    real = mask.bool()
    # RoBERTa: positions count real tokens from padding_idx + 1; pads sit at padding_idx.
    pos = torch.cumsum(real.long(), 1) * real.long() + PAD
    e = "bert.model.embeddings"
    x = sd[f"{e}.word_embeddings.weight"][ids] + sd[f"{e}.position_embeddings.weight"][pos]
    x = _ln(sd, x + sd[f"{e}.token_type_embeddings.weight"][0], f"{e}.LayerNorm", 1e-5)
    enc_blocked = ~real[:, None, None, :]
    for i in range(L_ENC):
        p = f"bert.model.encoder.layer.{i}"
        a, _ = _mha(*(_lin(sd, x, f"{p}.attention.self.{n}") for n in ("query", "key", "value")), HEADS, enc_blocked)
        x = _ln(sd, x + _lin(sd, a, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm", 1e-5)
        f = _lin(sd, F.gelu(_lin(sd, x, f"{p}.intermediate.dense")), f"{p}.output.dense")
        x = _ln(sd, x + f, f"{p}.output.LayerNorm", 1e-5)
    memory, t = x, dec.shape[1]
    div = torch.exp(torch.arange(0, D, 2).float() * -(math.log(10000.0) / D))
    pe = torch.zeros(t, D)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(torch.arange(t)[:, None] * div), torch.cos(torch.arange(t)[:, None] * div)
    y = sd["decoder.embeddings.weight"][dec] * math.sqrt(D) + pe
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    for j in range(L_DEC):
        p = f"decoder.transformer_layers.{j}"
        n1 = _ln(sd, y, f"{p}.layer_norm_1", 1e-6)
        qkv = [_lin(sd, n1, f"{p}.self_attn.linear_{n}") for n in ("query", "keys", "values")]
        y = y + _lin(sd, _mha(*qkv, DHEADS, future)[0], f"{p}.self_attn.final_linear")
        q = _lin(sd, _ln(sd, y, f"{p}.layer_norm_2", 1e-6), f"{p}.context_attn.linear_query")
        k, v = _lin(sd, memory, f"{p}.context_attn.linear_keys"), _lin(sd, memory, f"{p}.context_attn.linear_values")
        mid, attn = _mha(q, k, v, DHEADS, enc_blocked)
        y = y + _lin(sd, mid, f"{p}.context_attn.final_linear")
        h = F.gelu(_lin(sd, _ln(sd, y, f"{p}.feed_forward.layer_norm", 1e-6), f"{p}.feed_forward.w_1"), approximate="tanh")
        y = y + _lin(sd, h, f"{p}.feed_forward.w_2")
    y = _ln(sd, y, "decoder.layer_norm", 1e-6)
    if "generator.0.bias" in sd:
        return F.log_softmax(F.linear(y, sd["decoder.embeddings.weight"], sd["generator.0.bias"]), -1)
    # CopyGenerator, including its second softmax over the copy scores.
    attn = attn.mean(1)
    gen = F.linear(y, sd["decoder.embeddings.weight"], sd["generator.gen_proj.bias"])
    copy = torch.zeros_like(gen).scatter_add(2, ids[:, None, :].expand(-1, t, -1), attn)
    p = torch.sigmoid(_lin(sd, torch.cat([torch.matmul(attn, memory), y], -1), "generator.prob_proj"))
    return torch.log(p * gen.softmax(-1) + (1 - p) * copy.softmax(-1))


def _inputs():
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, V, (2, 8), generator=g)
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    ids[1, 5:], mask[1, 5:] = PAD, 0
    dec = torch.randint(3, V, (2, 6), generator=g)
    dec[:, 0] = 0
    return ids, mask, dec


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
@pytest.mark.parametrize("p_gen", [False, True], ids=["generator", "pointer-generator"])
def test_presumm_pickle_matches_presumm_forward(tmp_path, p_gen, legacy):
    sd = presumm_state_dict(p_gen)
    write_release(tmp_path / "release", sd, legacy=legacy)
    overrides = {"copy_double_softmax": True} if p_gen else {}
    model = PalmForConditionalGeneration.from_pretrained(tmp_path / "release", **overrides).eval()
    c = model.config
    assert model.source_format == "presumm-palm"
    assert (c.use_pointer_generator, c.decoder_heads, c.num_attention_heads, c.position_offset) == (p_gen, 8, HEADS, 2)
    # dec_heads is not stored in opt (the original silently used 8); our tiny file was built with 2 heads.
    model = PalmForConditionalGeneration.from_pretrained(tmp_path / "release", dec_num_attention_heads=DHEADS, **overrides)
    ids, mask, dec = _inputs()
    with torch.no_grad():
        ours = F.log_softmax(model.eval()(ids, mask, dec).logits, -1)
    assert (ours - presumm_log_probs(sd, ids, mask, dec)).abs().max().item() < 1e-5


def test_keys_accounted_for_buffers_dropped_embeddings_tied(tmp_path):
    sd = presumm_state_dict(p_gen=False)
    write_release(tmp_path / "release", sd)
    loaded = read_any_checkpoint(tmp_path / "release" / "model_palm_en_base.pt", dec_num_attention_heads=DHEADS)
    dropped = {k for k in sd if k.endswith(".mask")} | {"decoder.pos_emb.pe", "generator.0.weight"}
    dropped |= {"bert.model.pooler.dense.weight", "bert.model.pooler.dense.bias"}
    assert len(dropped) == L_DEC + 4 and not any(k.endswith("mask") or "pos_emb" in k for k in loaded.state_dict)
    assert len(loaded.state_dict) == len(sd) - len(dropped)
    model = PalmForConditionalGeneration(loaded.config)
    assert set(model.state_dict()) == set(loaded.state_dict)
    torch.testing.assert_close(loaded.state_dict["lm_bias"], sd["generator.0.bias"], rtol=0, atol=0)
    torch.testing.assert_close(loaded.state_dict["decoder.layers.1.cross_attn.k_proj.weight"],
                               sd["decoder.transformer_layers.1.context_attn.linear_keys.weight"], rtol=0, atol=0)  # fmt: skip


def test_convert_keeps_generator_tied(tmp_path):
    sd = presumm_state_dict(p_gen=True)
    write_release(tmp_path / "release", sd)
    out = convert_checkpoint(tmp_path / "release", tmp_path / "ours")
    model = load_model(out)
    assert model.source_format == "alicemind" and model.config.use_pointer_generator
    assert model.output_embeddings.weight is model.decoder_embeddings.word_embeddings.weight
    torch.testing.assert_close(model.output_embeddings.weight, sd["generator.gen_proj.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.copy_gate.proj.weight, sd["generator.prob_proj.weight"], rtol=0, atol=0)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_hostile_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    sd = presumm_state_dict(p_gen=False)
    torch.save({"model": sd, "opt": _Exploit(marker), "optims": []}, tmp_path / "model_palm_en_base.pt")
    with pytest.raises(UnsafeCheckpointError, match="exec"):
        PalmForConditionalGeneration.from_pretrained(tmp_path / "model_palm_en_base.pt")
    assert not marker.exists()
