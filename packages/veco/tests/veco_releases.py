"""Tiny synthetic checkpoints in the exact layouts VECO released (reference models-language.md 3.4, errata 1).

The NLG file is what fairseq's ``checkpoint_utils.save_state`` writes: ``{"args": argparse.Namespace, "model":
state_dict, "optimizer_history", "extra_state", "last_optimizer_state"}``, with fairseq's key names, the
``encoder.version`` / ``decoder.version`` buffers, 24 decoder layers and one embedding row more than ``dict.txt``
(the ``<mask>`` the pre-training task added).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

H, FFN, HEADS, ENC_LAYERS, DEC_LAYERS, POSITIONS = 32, 64, 4, 2, 24, 66
WORDS = [f"w{i}" for i in range(40)]
LANGS = ["[de]", "[en]", "[fr]"]


def dictionary_lines(words=WORDS, langs=LANGS) -> list[str]:
    return [f"{w} {1000 - i}" for i, w in enumerate(words)] + [f"{tag} 1" for tag in langs]


def fairseq_state_dict(rows: int, *, seed: int = 0, dec_layers: int = DEC_LAYERS) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def t(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd: dict[str, torch.Tensor] = {}

    def linear(name, out, inp):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = t(out, inp), t(out, scale=0.05)

    def norm(name):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = 1 + t(H, scale=0.1), t(H, scale=0.05)

    embed = t(rows, H)
    embed[1] = 0  # fairseq zeroes the padding row
    for side, layers in (("encoder", ENC_LAYERS), ("decoder", dec_layers)):
        sd[f"{side}.embed_tokens.weight"] = embed
        sd[f"{side}.embed_positions.weight"] = t(POSITIONS, H)
        norm(f"{side}.layernorm_embedding")
        sd[f"{side}.version"] = torch.tensor([3.0])
        for i in range(layers):
            p = f"{side}.layers.{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                linear(f"{p}.self_attn.{proj}", H, H)
            norm(f"{p}.self_attn_layer_norm")
            if side == "decoder":
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    linear(f"{p}.encoder_attn.{proj}", H, H)
                norm(f"{p}.encoder_attn_layer_norm")
            linear(f"{p}.fc1", FFN, H)
            linear(f"{p}.fc2", H, FFN)
            norm(f"{p}.final_layer_norm")
    sd["decoder.output_projection.weight"] = embed  # tied (share_decoder_input_output_embed)
    return sd


def veco_args(**overrides) -> argparse.Namespace:
    values = dict(
        arch="veco_large", task="translation_from_pretrained_veco", encoder_embed_dim=H, encoder_ffn_embed_dim=FFN,
        encoder_layers=ENC_LAYERS, encoder_attention_heads=HEADS, decoder_embed_dim=H, decoder_ffn_embed_dim=FFN,
        decoder_layers=DEC_LAYERS, decoder_attention_heads=HEADS, encoder_normalize_before=False,
        decoder_normalize_before=False, encoder_learned_pos=True, decoder_learned_pos=True, layernorm_embedding=True,
        no_scale_embedding=False, share_all_embeddings=True, share_decoder_input_output_embed=True,
        activation_fn="gelu", dropout=0.1, attention_dropout=0.0, activation_dropout=0.0, max_source_positions=64,
        max_target_positions=64, keep_decoder_layers=None, keep_encoder_layers=None, seed=222,
    )  # fmt: skip
    values.update(overrides)
    return argparse.Namespace(**values)


def write_fairseq_folder(folder: Path, *, state=None, args=None, lines=None, spm_model: Path | None = None) -> Path:
    """``model.pt`` + ``dict.txt`` (+ ``sentencepiece.bpe.model``) as in ``saved_model/veco-large/``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = dictionary_lines() if lines is None else lines
    rows = 4 + len(lines) + 1  # the <mask> row
    state = fairseq_state_dict(rows) if state is None else state
    ckpt = {
        "args": args if args is not None else veco_args(),
        "model": state,
        "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion", "num_updates": 0}],
        "extra_state": {"epoch": 1, "val_loss": None},
        "last_optimizer_state": None,
    }
    torch.save(ckpt, folder / "model.pt")
    (folder / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if spm_model is not None:
        (folder / "sentencepiece.bpe.model").write_bytes(spm_model.read_bytes())
    return folder


def fairseq_to_bart(state: dict[str, torch.Tensor], keep: list[int], dict_rows: int) -> dict[str, torch.Tensor]:
    """The test's own mapping of the raw fairseq file to BART names (independent of alicemind's converter):
    fairseq and BART share the layer names, so it is the ``model.`` prefix, the kept layers renumbered, and the
    ``<mask>`` row dropped."""
    out = {}
    for key, value in state.items():
        if key.endswith(".version") or "output_projection" in key:
            continue
        parts = key.split(".")
        if parts[0] == "decoder" and parts[1] == "layers":
            if int(parts[2]) not in keep:
                continue
            parts[2] = str(keep.index(int(parts[2])))
        if parts[1] == "embed_tokens":
            value = value[:dict_rows]
        out["model." + ".".join(parts)] = value
    word = out["model.encoder.embed_tokens.weight"]
    out["model.shared.weight"] = out["lm_head.weight"] = word
    out["final_logits_bias"] = torch.zeros(1, word.shape[0])
    return out
