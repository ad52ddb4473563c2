"""Released PALM checkpoints -> our layout.

Two formats were released (key names: reference models-language.md section 2.6):

* Chinese (sofa): a folder with ``config.json``, ``palm_model.pt`` (a plain state dict with ``bert.*``, ``cls.*``
  and ``decoder.decoder.layer.*`` keys, fused ``query_key_value`` / ``key_value``) and ``vocab.txt``.
* English (PreSumm fork): one pickle ``{'model': state_dict, 'opt': argparse.Namespace, 'optims': [...]}`` with
  ``bert.model.*`` (RoBERTa), ``decoder.transformer_layers.*`` and ``generator.*`` keys. It is read with core's
  restricted unpickler: the Namespace and optimizer objects become plain dicts; any other global is refused.

Every source key is either renamed by exactly one rule below or dropped by a listed rule with its reason;
anything else is an error, so a layout change can never be loaded silently.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint import CheckpointMismatchError, load_checkpoint_object, load_state_dict_file
from alicemind.core.config import CONFIG_NAME, read_json_file
from alicemind.core.modeling import WEIGHTS_NAME, LoadedCheckpoint
from alicemind.palm.config import PalmConfig

logger = logging.getLogger(__name__)

SOFA_WEIGHTS_NAME = "palm_model.pt"
PRESUMM_CHECKPOINT_NAMES = ("model_palm_en_base.pt",)
# Heads that a smaller model class (PalmModel, or a generation model for mlm_head) does not have: loading them
# there is skipped, not an error. Only keys absent from the model are ever skipped.
HEAD_KEYS = (r"^mlm_head\.", r"^lm_bias$", r"^copy_gate\.")

_L = r"(\d+)"
SOFA_RULES: list[tuple[str, str]] = [
    (r"bert\.embeddings\.LayerNorm\.(weight|bias)", r"embeddings.norm.\1"),
    (r"bert\.embeddings\.(word|position|token_type)_embeddings\.weight", r"embeddings.\1_embeddings.weight"),
    (rf"bert\.encoder\.layer\.{_L}\.attention\.LayerNorm\.", r"encoder.layers.\1.self_attn_norm."),
    (rf"bert\.encoder\.layer\.{_L}\.attention\.self\.query_key_value\.", r"encoder.layers.\1.self_attn.qkv_proj."),
    (rf"bert\.encoder\.layer\.{_L}\.attention\.self\.query\.", r"encoder.layers.\1.self_attn.q_proj."),
    (rf"bert\.encoder\.layer\.{_L}\.attention\.self\.key\.", r"encoder.layers.\1.self_attn.k_proj."),
    (rf"bert\.encoder\.layer\.{_L}\.attention\.self\.value\.", r"encoder.layers.\1.self_attn.v_proj."),
    (rf"bert\.encoder\.layer\.{_L}\.attention\.output\.dense\.", r"encoder.layers.\1.self_attn.out_proj."),
    (rf"bert\.encoder\.layer\.{_L}\.LayerNorm\.", r"encoder.layers.\1.ffn_norm."),
    (rf"bert\.encoder\.layer\.{_L}\.intermediate\.dense\.", r"encoder.layers.\1.ffn.fc_in."),
    (rf"bert\.encoder\.layer\.{_L}\.output\.dense\.", r"encoder.layers.\1.ffn.fc_out."),
    (r"bert\.encoder\.LayerNorm\.", r"encoder.final_norm."),
    (r"cls\.predictions\.transform\.dense\.", r"mlm_head.dense."),
    (r"cls\.predictions\.transform\.LayerNorm\.", r"mlm_head.norm."),
    (r"cls\.predictions\.bias", r"mlm_head.bias"),
    (r"cls\.predictions\.decoder_weight", r"mlm_head.decoder.weight"),
    (rf"decoder\.decoder\.layer\.{_L}\.attention\.query_key_value\.", r"decoder.layers.\1.self_attn.qkv_proj."),
    (rf"decoder\.decoder\.layer\.{_L}\.attention\.dense\.", r"decoder.layers.\1.self_attn.out_proj."),
    (rf"decoder\.decoder\.layer\.{_L}\.cross_attention\.query\.", r"decoder.layers.\1.cross_attn.q_proj."),
    (rf"decoder\.decoder\.layer\.{_L}\.cross_attention\.key_value\.", r"decoder.layers.\1.cross_attn.kv_proj."),
    (rf"decoder\.decoder\.layer\.{_L}\.cross_attention\.dense\.", r"decoder.layers.\1.cross_attn.out_proj."),
    (rf"decoder\.decoder\.layer\.{_L}\.input_layernorm\.", r"decoder.layers.\1.self_attn_norm."),
    (rf"decoder\.decoder\.layer\.{_L}\.post_attention_layernorm\.", r"decoder.layers.\1.cross_attn_norm."),
    (rf"decoder\.decoder\.layer\.{_L}\.post_cross_attention_layernorm\.", r"decoder.layers.\1.ffn_norm."),
    (rf"decoder\.decoder\.layer\.{_L}\.intermediate\.", r"decoder.layers.\1.ffn.fc_in."),
    (rf"decoder\.decoder\.layer\.{_L}\.output\.", r"decoder.layers.\1.ffn.fc_out."),
    (r"decoder\.decoder\.final_layernorm\.", r"decoder.final_norm."),
]
SOFA_DROPS: dict[str, str] = {
    r"bert\.pooler\.dense\.(weight|bias)": "PALM never calls the pooler (its pooled output is the raw [CLS] state)",
    r"cls\.seq_relationship\.(weight|bias)": "3-way sentence head of the encoder pre-training; unused by PALM",
}

_ENC = r"bert\.model\.encoder\.layer\.(\d+)\."
_DEC = r"decoder\.transformer_layers\.(\d+)\."
PRESUMM_RULES: list[tuple[str, str]] = [
    (r"bert\.model\.embeddings\.LayerNorm\.(weight|bias)", r"embeddings.norm.\1"),
    (r"bert\.model\.embeddings\.(word|position|token_type)_embeddings\.weight", r"embeddings.\1_embeddings.weight"),
    (_ENC + r"attention\.self\.query\.", r"encoder.layers.\1.self_attn.q_proj."),
    (_ENC + r"attention\.self\.key\.", r"encoder.layers.\1.self_attn.k_proj."),
    (_ENC + r"attention\.self\.value\.", r"encoder.layers.\1.self_attn.v_proj."),
    (_ENC + r"attention\.output\.dense\.", r"encoder.layers.\1.self_attn.out_proj."),
    (_ENC + r"attention\.output\.LayerNorm\.", r"encoder.layers.\1.self_attn_norm."),
    (_ENC + r"intermediate\.dense\.", r"encoder.layers.\1.ffn.fc_in."),
    (_ENC + r"output\.dense\.", r"encoder.layers.\1.ffn.fc_out."),
    (_ENC + r"output\.LayerNorm\.", r"encoder.layers.\1.ffn_norm."),
    (r"decoder\.embeddings\.weight", r"decoder_embeddings.word_embeddings.weight"),
    (_DEC + r"self_attn\.linear_query\.", r"decoder.layers.\1.self_attn.q_proj."),
    (_DEC + r"self_attn\.linear_keys\.", r"decoder.layers.\1.self_attn.k_proj."),
    (_DEC + r"self_attn\.linear_values\.", r"decoder.layers.\1.self_attn.v_proj."),
    (_DEC + r"self_attn\.final_linear\.", r"decoder.layers.\1.self_attn.out_proj."),
    (_DEC + r"context_attn\.linear_query\.", r"decoder.layers.\1.cross_attn.q_proj."),
    (_DEC + r"context_attn\.linear_keys\.", r"decoder.layers.\1.cross_attn.k_proj."),
    (_DEC + r"context_attn\.linear_values\.", r"decoder.layers.\1.cross_attn.v_proj."),
    (_DEC + r"context_attn\.final_linear\.", r"decoder.layers.\1.cross_attn.out_proj."),
    (_DEC + r"feed_forward\.w_1\.", r"decoder.layers.\1.ffn.fc_in."),
    (_DEC + r"feed_forward\.w_2\.", r"decoder.layers.\1.ffn.fc_out."),
    (_DEC + r"feed_forward\.layer_norm\.", r"decoder.layers.\1.ffn_norm."),
    (_DEC + r"layer_norm_1\.", r"decoder.layers.\1.self_attn_norm."),
    (_DEC + r"layer_norm_2\.", r"decoder.layers.\1.cross_attn_norm."),
    (r"decoder\.layer_norm\.", r"decoder.final_norm."),
    (r"generator\.0\.bias", r"lm_bias"),
    (r"generator\.gen_proj\.bias", r"lm_bias"),
    (r"generator\.prob_proj\.", r"copy_gate.proj."),
]
PRESUMM_DROPS: dict[str, str] = {
    r"bert\.model\.pooler\.dense\.(weight|bias)": "AbsSummarizer never calls the RoBERTa pooler",
    r"bert\.model\.embeddings\.position_ids": "buffer recomputed at run time",
    _DEC + r"mask": "1x5000x5000 causal-mask buffer per layer; causality is built on the fly",
    r"decoder\.pos_emb\.pe": "sinusoidal table, recomputed (SinusoidalPositions)",
    r"generator\.0\.weight": "tied to decoder.embeddings.weight (checked equal)",
    r"generator\.gen_proj\.weight": "tied to decoder.embeddings.weight (checked equal)",
}


def map_keys(
    state_dict: Mapping[str, torch.Tensor],
    rules: Sequence[tuple[str, str]],
    drops: Mapping[str, str],
    *,
    source: str,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename every key by the first rule whose pattern matches its start, or drop it by a full-match drop rule.

    Returns (renamed state dict, dropped keys). A key that no rule accounts for, or two keys renamed to one name,
    raises :class:`CheckpointMismatchError`.
    """
    compiled = [(re.compile(p), r) for p, r in rules]
    drop_patterns = [re.compile(p) for p in drops]
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped, unknown = [], []
    for key, tensor in state_dict.items():
        if any(p.fullmatch(key) for p in drop_patterns):
            dropped.append(key)
            continue
        for pattern, replacement in compiled:
            match = pattern.match(key)
            if match:
                new = match.expand(replacement) + key[match.end() :]
                if new in out:
                    raise CheckpointMismatchError(f"{source}: both {origin[new]!r} and {key!r} map to {new!r}")
                out[new], origin[new] = tensor, key
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointMismatchError(
            f"{source}: {len(unknown)} key(s) that no PALM conversion rule accounts for: {unknown[:20]}"
        )
    return out, dropped


def _check_tied(state_dict: Mapping[str, torch.Tensor], alias: str, target: str, source: str) -> None:
    if alias in state_dict and not torch.equal(state_dict[alias], state_dict[target]):
        raise CheckpointMismatchError(
            f"{source}: {alias} differs from {target}; the release ties them, so this file is not a PALM checkpoint "
            "or was edited"
        )


def _layer_count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    indices = {int(m.group(1)) for k in state_dict if (m := regex.match(k))}
    return max(indices) + 1 if indices else 0


# -- Chinese (sofa) ------------------------------------------------------------------------------------------
def sofa_config(raw: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], vocab_lines: int | None) -> dict:
    """Our config fields from sofa's ``config.json``; table sizes are taken from the weights themselves."""
    values = {k: v for k, v in raw.items() if k not in ("model_type", "layernorm_epsilon")}
    values["architecture"] = "sofa-zh"
    if "layernorm_epsilon" in raw:
        values["layer_norm_eps"] = raw["layernorm_epsilon"]
    words = state_dict["bert.embeddings.word_embeddings.weight"]
    shapes = {
        "vocab_size": words.shape[0],
        "hidden_size": words.shape[1],
        "max_position_embeddings": state_dict["bert.embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state_dict["bert.embeddings.token_type_embeddings.weight"].shape[0],
        "num_hidden_layers": _layer_count(state_dict, r"bert\.encoder\.layer\.(\d+)\."),
        "dec_hidden_layers": _layer_count(state_dict, r"decoder\.decoder\.layer\.(\d+)\."),
        "intermediate_size": state_dict["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
    }
    for name, actual in shapes.items():
        if name in raw and raw[name] != actual:
            logger.warning("config.json says %s=%s but the weights have %s; using the weights", name, raw[name], actual)
        values[name] = int(actual)
    values["attn_separate"] = "bert.encoder.layer.0.attention.self.query.weight" in state_dict
    # sofa's PalmModel runs the encoder's final LayerNorm twice (see PalmConfig.encoder_final_norm_twice).
    values["encoder_final_norm_twice"] = bool(values.get("pre_ln", True))
    if vocab_lines is not None and vocab_lines < shapes["vocab_size"]:
        values["real_vocab_size"] = vocab_lines
    return values


def sofa_state_dict_to_ours(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """sofa ``palm_model.pt`` keys -> ours (MLM head included as ``mlm_head.*``, tied to the word embeddings)."""
    source = SOFA_WEIGHTS_NAME
    _check_tied(state_dict, "cls.predictions.decoder_weight", "bert.embeddings.word_embeddings.weight", source)
    ours, _ = map_keys(state_dict, SOFA_RULES, SOFA_DROPS, source=source)
    if "mlm_head.dense.weight" in ours:
        ours["mlm_head.decoder.weight"] = ours["embeddings.word_embeddings.weight"]
    return ours


def read_sofa_folder(path: Path, **overrides: Any) -> LoadedCheckpoint:
    """Read sofa's Chinese PALM folder (``config.json`` + ``palm_model.pt`` [+ ``vocab.txt``])."""
    raw_sd = load_state_dict_file(path / SOFA_WEIGHTS_NAME)
    raw_config = read_json_file(path / CONFIG_NAME) if (path / CONFIG_NAME).is_file() else {}
    vocab = path / "vocab.txt"
    vocab_lines = sum(1 for _ in vocab.open(encoding="utf-8")) if vocab.is_file() else None
    config = PalmConfig.from_dict(sofa_config(raw_config, raw_sd, vocab_lines), **overrides)
    return LoadedCheckpoint(config, sofa_state_dict_to_ours(raw_sd), "sofa-palm", ignore_unexpected=HEAD_KEYS)


# -- English (PreSumm fork) ----------------------------------------------------------------------------------
# BOS/EOS/PAD per encoder vocabulary (PreSumm's data loader; reference section 2.5 for the Chinese tokens).
_PRESUMM_SPECIALS = {"roberta": (1, 0, 2), "bert": (0, 1, 2), "zh_bert": (0, 2, 3)}


def presumm_config(
    opt: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], encoder_config: Mapping[str, Any] | None = None
) -> dict:
    """Our config fields from ``checkpoint['opt']``, the tensor shapes and the encoder's ``config.json``.

    ``dec_heads`` is not stored in ``opt`` by the original code (it silently used the CLI default), so 8 is used
    unless ``opt`` has it. The encoder's head count, activation and LN eps come from ``encoder_config`` (the
    release ships ``roberta-base/config.json`` beside the checkpoint); without it: hidden_size // 64 heads.
    """
    enc = dict(encoder_config or {})
    encoder = str(opt.get("encoder", "roberta"))
    if encoder not in _PRESUMM_SPECIALS:
        raise ValueError(f"PALM EN checkpoint with opt.encoder={encoder!r}; supported: {sorted(_PRESUMM_SPECIALS)}")
    pad, bos, eos = _PRESUMM_SPECIALS[encoder]
    words = state_dict["bert.model.embeddings.word_embeddings.weight"]
    dec_ff = state_dict["decoder.transformer_layers.0.feed_forward.w_1.weight"]
    roberta = encoder == "roberta"
    hidden = int(words.shape[1])
    return dict(
        architecture="presumm-en",
        vocab_size=int(words.shape[0]),
        hidden_size=hidden,
        num_hidden_layers=_layer_count(state_dict, _ENC),
        num_attention_heads=int(enc.get("num_attention_heads", max(1, hidden // 64))),
        hidden_act=str(enc.get("hidden_act", "gelu")),
        intermediate_size=int(state_dict["bert.model.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(state_dict["bert.model.embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(state_dict["bert.model.embeddings.token_type_embeddings.weight"].shape[0]),
        layer_norm_eps=float(enc.get("layer_norm_eps", 1e-5 if roberta else 1e-12)),
        pre_ln=False,
        position_offset=pad + 1 if roberta else 0,
        initializer_range=0.02,
        dec_hidden_layers=_layer_count(state_dict, _DEC),
        dec_hidden_size=int(dec_ff.shape[1]),
        dec_num_attention_heads=int(opt.get("dec_heads", 8)),
        dec_intermediate_size=int(dec_ff.shape[0]),
        dec_hidden_act="gelu_tanh",
        dec_layer_norm_eps=1e-6,
        dec_dropout=float(opt.get("dec_dropout", 0.2)),
        use_pointer_generator="generator.prob_proj.weight" in state_dict,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
    )


def presumm_state_dict_to_ours(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PALM EN ``checkpoint['model']`` keys -> ours; mask buffers and the sinusoidal table are dropped."""
    source = "PALM EN checkpoint['model']"
    for alias in ("generator.0.weight", "generator.gen_proj.weight"):
        _check_tied(state_dict, alias, "decoder.embeddings.weight", source)
    ours, _ = map_keys(state_dict, PRESUMM_RULES, PRESUMM_DROPS, source=source)
    return ours


def read_presumm_file(path: Path, **overrides: Any) -> LoadedCheckpoint:
    """Read PALM EN's pickled ``{'model', 'opt', 'optims'}`` file safely."""
    obj = load_checkpoint_object(path)
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointMismatchError(
            f"{path}: expected a dict with a 'model' entry (PALM EN), got {type(obj).__name__}"
        )
    state_dict, opt = obj["model"], obj.get("opt") or {}
    if not isinstance(opt, dict):
        raise CheckpointMismatchError(f"{path}: checkpoint['opt'] is a {type(opt).__name__}, expected a Namespace")
    encoder_json = path.parent / "roberta-base" / CONFIG_NAME
    encoder_config = read_json_file(encoder_json) if encoder_json.is_file() else None
    if encoder_config is None:
        logger.warning("%s not found: encoder heads default to hidden_size // 64", encoder_json)
    config = PalmConfig.from_dict(presumm_config(opt, state_dict, encoder_config), **overrides)
    return LoadedCheckpoint(config, presumm_state_dict_to_ours(state_dict), "presumm-palm", ignore_unexpected=HEAD_KEYS)


# -- dispatch ------------------------------------------------------------------------------------------------
def _layout_of_folder(path: Path) -> str | None:
    if (path / WEIGHTS_NAME).is_file():
        return "alicemind"
    if (path / SOFA_WEIGHTS_NAME).is_file():
        return "sofa-palm"
    if any((path / name).is_file() for name in PRESUMM_CHECKPOINT_NAMES):
        return "presumm-palm"
    return None


def locate_checkpoint(path: str | Path) -> tuple[Path, str]:
    """(folder or file, layout) of the checkpoint at ``path``: ``"alicemind"``, ``"sofa-palm"`` or
    ``"presumm-palm"``. A folder holding a single sub-folder that is a checkpoint (an extracted release tarball)
    resolves to that sub-folder."""
    path = Path(path)
    if path.is_file():
        return path, "presumm-palm"
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {path}")
    layout = _layout_of_folder(path)
    if layout is not None:
        return path, layout
    found = [(sub, lay) for sub in sorted(path.iterdir()) if sub.is_dir() and (lay := _layout_of_folder(sub))]
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"{path} holds no PALM checkpoint: expected {WEIGHTS_NAME} (ours), {SOFA_WEIGHTS_NAME} (sofa Chinese) "
        f"or {PRESUMM_CHECKPOINT_NAMES[0]} (PALM EN)"
        + (f"; several candidates: {[str(f[0]) for f in found]}" if found else "")
    )


def read_any_checkpoint(path: str | Path, **overrides: Any) -> LoadedCheckpoint:
    """Read our folder, a sofa folder or a PALM EN pickle (file, or folder holding it) in our key names."""
    path, layout = locate_checkpoint(path)
    if layout == "alicemind":
        config = PalmConfig.from_json_file(path / CONFIG_NAME, **overrides)
        return LoadedCheckpoint(
            config, load_state_dict_file(path / WEIGHTS_NAME), "alicemind", ignore_unexpected=HEAD_KEYS
        )
    if layout == "sofa-palm":
        return read_sofa_folder(path, **overrides)
    if path.is_dir():
        path = next(path / n for n in PRESUMM_CHECKPOINT_NAMES if (path / n).is_file())
    return read_presumm_file(path, **overrides)


_TOKENIZER_FILES = ("vocab.txt", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json")


def load_model(path: str | Path, **overrides: Any):
    """The right model for a checkpoint: :class:`PalmForPreTraining` when it carries the MLM head (the Chinese
    release), else :class:`PalmForConditionalGeneration`; loaded strictly."""
    from alicemind.core.checkpoint import load_into_model
    from alicemind.palm.model import PalmForConditionalGeneration
    from alicemind.palm.pretraining import PalmForPreTraining

    loaded = read_any_checkpoint(path, **overrides)
    cls = PalmForPreTraining if "mlm_head.dense.weight" in loaded.state_dict else PalmForConditionalGeneration
    model = cls(loaded.config)
    load_into_model(model, loaded.state_dict, ignore_missing=loaded.ignore_missing)
    model.source_format = loaded.source_format
    return model


def convert_checkpoint(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a released PALM checkpoint to our folder (``config.json`` + ``model.safetensors``, tokenizer files
    copied), loading it strictly on the way.

    ``dst`` is written as one atomic save (:func:`alicemind.core.io.save_folder`): an old folder there is replaced
    whole, so none of its files (an old ``vocab.txt``) survive; a folder holding files no save writes is refused
    before the checkpoint is read, unless ``overwrite``.
    """
    from alicemind.core.io import check_replaceable, save_folder

    src, dst = Path(src), Path(dst)
    check_replaceable(dst, overwrite=overwrite)
    model = load_model(src)
    located, _ = locate_checkpoint(src)
    folder = located if located.is_dir() else located.parent
    with save_folder(dst, overwrite=overwrite) as staging:
        model.save_pretrained(staging)
        for candidate in (folder, folder / "roberta-base"):
            for name in _TOKENIZER_FILES:
                if (candidate / name).is_file() and not (staging / name).exists():
                    shutil.copyfile(candidate / name, staging / name)
    return dst
