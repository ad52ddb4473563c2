"""The Chinese (sofa) release: a synthetic ``palm_model.pt`` folder in the exact released key layout is read,
every key accounted for, tied weights tied, and the outputs equal an independent re-statement of sofa's forward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from palm_releases import ZH, sofa_state_dict, write_sofa_folder

from alicemind.core.checkpoint import CheckpointMismatchError, load_safetensors
from alicemind.palm.convert import convert_checkpoint, load_model, read_any_checkpoint
from alicemind.palm.model import PalmForConditionalGeneration
from alicemind.palm.pretraining import PalmForPreTraining

V, H, HEADS, FF, L_ENC, L_DEC, POS, TYPES, EPS = (
    ZH.V,
    ZH.H,
    ZH.HEADS,
    ZH.FF,
    ZH.L_ENC,
    ZH.L_DEC,
    ZH.POS,
    ZH.TYPES,
    ZH.EPS,
)
REAL_VOCAB = ZH.REAL_VOCAB


# -- sofa's forward, re-stated from modeling_palm.py as plain tensor math --------------------------------------
def _ln(sd, x, name):
    return F.layer_norm(x, (H,), sd[f"{name}.weight"], sd[f"{name}.bias"], EPS)


def _lin(sd, x, name):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def _attend(q, k, v, additive):
    d = H // HEADS
    q, k, v = (x.view(x.shape[0], x.shape[1], HEADS, d).permute(0, 2, 1, 3) for x in (q, k, v))
    scores = torch.matmul(q / d**0.25, k.transpose(-1, -2) / d**0.25) + additive
    out = torch.matmul(scores.softmax(-1), v)
    return out.permute(0, 2, 1, 3).reshape(q.shape[0], -1, H)


def _embed(sd, ids):
    pos = torch.arange(ids.shape[1])
    x = sd["bert.embeddings.word_embeddings.weight"][ids] + sd["bert.embeddings.position_embeddings.weight"][pos]
    x = x + sd["bert.embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)]
    return _ln(sd, x, "bert.embeddings.LayerNorm")


def sofa_logits(sd, ids, mask, dec_ids):
    enc_add = (1.0 - mask[:, None, None, :].float()) * -10000.0
    x = _embed(sd, ids)
    for i in range(L_ENC):
        p = f"bert.encoder.layer.{i}"
        q, k, v = _lin(sd, _ln(sd, x, f"{p}.attention.LayerNorm"), f"{p}.attention.self.query_key_value").split(H, -1)
        x = x + _lin(sd, _attend(q, k, v, enc_add), f"{p}.attention.output.dense")
        f = F.gelu(_lin(sd, _ln(sd, x, f"{p}.LayerNorm"), f"{p}.intermediate.dense"))
        x = x + _lin(sd, f, f"{p}.output.dense")
    memory = _ln(sd, _ln(sd, x, "bert.encoder.LayerNorm"), "bert.encoder.LayerNorm")  # sofa applies it twice
    t = dec_ids.shape[1]
    ltor = torch.tril(torch.ones(t, t))
    y = _embed(sd, dec_ids)
    for j in range(L_DEC):
        p = f"decoder.decoder.layer.{j}"
        q, k, v = _lin(sd, _ln(sd, y, f"{p}.input_layernorm"), f"{p}.attention.query_key_value").split(H, -1)
        d = H // HEADS
        qh, kh, vh = (z.view(z.shape[0], t, HEADS, d).permute(0, 2, 1, 3) for z in (q, k, v))
        s = torch.matmul(qh, kh.transpose(-1, -2)) / math.sqrt(d) * ltor - 10000.0 * (1 - ltor)
        a = torch.matmul(s.softmax(-1), vh).permute(0, 2, 1, 3).reshape(y.shape[0], t, H)
        y = y + _lin(sd, a, f"{p}.attention.dense")
        q = _lin(sd, _ln(sd, y, f"{p}.post_attention_layernorm"), f"{p}.cross_attention.query")
        k, v = _lin(sd, memory, f"{p}.cross_attention.key_value").split(H, -1)
        y = y + _lin(sd, _attend(q, k, v, enc_add), f"{p}.cross_attention.dense")
        f = F.gelu(_lin(sd, _ln(sd, y, f"{p}.post_cross_attention_layernorm"), f"{p}.intermediate"))
        y = y + _lin(sd, f, f"{p}.output")
    y = _ln(sd, y, "decoder.decoder.final_layernorm")
    return F.linear(y, sd["bert.embeddings.word_embeddings.weight"])


def _inputs():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, REAL_VOCAB, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    dec = torch.randint(1, REAL_VOCAB, (2, 5), generator=g)
    return ids, mask, dec


def test_sofa_folder_matches_sofa_forward(tmp_path):
    sd = sofa_state_dict()
    write_sofa_folder(tmp_path / "sofa", sd)
    model = PalmForConditionalGeneration.from_pretrained(tmp_path / "sofa").eval()
    assert model.source_format == "sofa-palm"
    c = model.config
    assert (c.vocab_size, c.real_vocab_size, c.encoder_final_norm_twice, c.layer_norm_eps) == (V, REAL_VOCAB, True, EPS)
    ids, mask, dec = _inputs()
    with torch.no_grad():
        ours = model(ids, mask, dec).logits
    ref = sofa_logits(sd, ids, mask, dec)
    assert (ours[..., :REAL_VOCAB] - ref[..., :REAL_VOCAB]).abs().max().item() < 1e-5
    assert torch.isneginf(ours[..., REAL_VOCAB:]).all()  # padded rows of the table are never produced


def test_every_key_accounted_for_and_heads_tied(tmp_path):
    sd = sofa_state_dict()
    loaded = read_any_checkpoint(_folder(tmp_path, sd))
    dropped = {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.seq_relationship.weight",
               "cls.seq_relationship.bias"}  # fmt: skip
    # Every source key except the two unused heads lands in a model parameter, values unchanged.
    model = PalmForPreTraining.from_pretrained(tmp_path / "sofa")
    ours = model.state_dict()
    assert set(loaded.state_dict) == set(ours)
    assert dropped <= set(sd) and len(sd) - len(dropped) == len(ours)  # decoder_weight -> mlm_head.decoder.weight
    torch.testing.assert_close(
        ours["encoder.layers.1.self_attn.qkv_proj.weight"],
        sd["bert.encoder.layer.1.attention.self.query_key_value.weight"],
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        ours["decoder.layers.0.cross_attn.kv_proj.bias"],
        sd["decoder.decoder.layer.0.cross_attention.key_value.bias"],
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(ours["mlm_head.bias"], sd["cls.predictions.bias"], rtol=0, atol=0)
    assert model.mlm_head.decoder.weight is model.embeddings.word_embeddings.weight


def _folder(tmp_path, sd):
    write_sofa_folder(tmp_path / "sofa", sd)
    return tmp_path / "sofa"


def test_unknown_key_is_an_error(tmp_path):
    sd = sofa_state_dict()
    sd["bert.encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointMismatchError, match="rotary"):
        PalmForConditionalGeneration.from_pretrained(_folder(tmp_path, sd))


def test_missing_key_is_an_error(tmp_path):
    sd = sofa_state_dict()
    del sd["decoder.decoder.layer.1.cross_attention.query.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"decoder\.layers\.1\.cross_attn\.q_proj\.bias"):
        PalmForConditionalGeneration.from_pretrained(_folder(tmp_path, sd))


def test_untied_decoder_weight_is_refused(tmp_path):
    sd = sofa_state_dict()
    sd["cls.predictions.decoder_weight"] = sd["cls.predictions.decoder_weight"] + 1
    with pytest.raises(CheckpointMismatchError, match="ties them"):
        read_any_checkpoint(_folder(tmp_path, sd))


def test_convert_round_trip(tmp_path):
    sd = sofa_state_dict()
    out = convert_checkpoint(_folder(tmp_path, sd), tmp_path / "ours")
    assert (out / "vocab.txt").is_file() and (out / "config.json").is_file()
    stored = load_safetensors(out / "model.safetensors")
    assert stored["mlm_head.decoder.weight"] is stored["embeddings.word_embeddings.weight"]  # stored once
    reloaded = load_model(out).eval()
    assert isinstance(reloaded, PalmForPreTraining) and reloaded.source_format == "alicemind"
    ids, mask, dec = _inputs()
    with torch.no_grad():
        ours = reloaded(ids, mask, dec).logits[..., :REAL_VOCAB]
    assert (ours - sofa_logits(sd, ids, mask, dec)[..., :REAL_VOCAB]).abs().max().item() < 1e-5
