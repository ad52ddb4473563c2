"""The English release: a synthetic ``{'model', 'opt', 'optims'}`` pickle in the exact PreSumm layout (argparse
Namespace and pickled optimizer objects included) is read without importing their code, every key is accounted
for, and outputs equal an independent re-statement of PreSumm's AbsSummarizer (plain and pointer-generator)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from palm_releases import EN, presumm_state_dict, write_presumm_release

from alicemind.core.checkpoint import UnsafeCheckpointError
from alicemind.palm.convert import convert_checkpoint, load_model, read_any_checkpoint
from alicemind.palm.model import PalmForConditionalGeneration, PalmModel

V, H, HEADS, FF, L_ENC, POS, D, DHEADS, DFF, L_DEC, PAD = (
    EN.V, EN.H, EN.HEADS, EN.FF, EN.L_ENC, EN.POS, EN.D, EN.DHEADS, EN.DFF, EN.L_DEC, EN.PAD
)  # fmt: skip


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
        h = F.gelu(
            _lin(sd, _ln(sd, y, f"{p}.feed_forward.layer_norm", 1e-6), f"{p}.feed_forward.w_1"), approximate="tanh"
        )
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
    write_presumm_release(tmp_path / "release", sd, legacy=legacy)
    overrides = {"copy_double_softmax": True} if p_gen else {}
    model = PalmForConditionalGeneration.from_pretrained(tmp_path / "release", **overrides).eval()
    c = model.config
    assert model.source_format == "presumm-palm"
    assert (c.use_pointer_generator, c.decoder_heads, c.num_attention_heads, c.position_offset) == (p_gen, 8, HEADS, 2)
    # dec_heads is not stored in opt (the original silently used 8); our tiny file was built with 2 heads.
    model = PalmForConditionalGeneration.from_pretrained(
        tmp_path / "release", dec_num_attention_heads=DHEADS, **overrides
    )
    ids, mask, dec = _inputs()
    with torch.no_grad():
        ours = F.log_softmax(model.eval()(ids, mask, dec).logits, -1)
    reference = presumm_log_probs(sd, ids, mask, dec)
    assert (ours - reference).abs().max().item() < 1e-5
    if p_gen:  # by default the copy distribution is not soft-maxed a second time: a different, sharper mixture
        fixed = PalmForConditionalGeneration.from_pretrained(tmp_path / "release", dec_num_attention_heads=DHEADS)
        with torch.no_grad():
            probs = fixed.eval()(ids, mask, dec).logits.exp()
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
        assert (probs.log() - reference).abs().max().item() > 0.1


def test_keys_accounted_for_buffers_dropped_embeddings_tied(tmp_path):
    sd = presumm_state_dict(p_gen=False)
    write_presumm_release(tmp_path / "release", sd)
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
    write_presumm_release(tmp_path / "release", sd)
    out = convert_checkpoint(tmp_path / "release", tmp_path / "ours")
    model = load_model(out)
    assert model.source_format == "alicemind" and model.config.use_pointer_generator
    assert model.output_embeddings.weight is model.decoder_embeddings.word_embeddings.weight
    torch.testing.assert_close(model.output_embeddings.weight, sd["generator.gen_proj.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.copy_gate.proj.weight, sd["generator.prob_proj.weight"], rtol=0, atol=0)
    backbone = PalmModel.from_pretrained(out)  # the bare encoder-decoder skips the output heads
    assert not hasattr(backbone, "copy_gate") and backbone.source_format == "alicemind"


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
