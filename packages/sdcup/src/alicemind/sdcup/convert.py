"""The released UER files -> our models, and our encoder -> a Hugging Face BERT folder.

Layouts read (``read_sdcup_checkpoint``; ``model.source_format`` says which was found):
  * ``alicemind``: our folder (config.json + model.safetensors);
  * ``uer``: ``sdcup_{base,large}_model.bin-N``: a pickled PyTorch state dict (read with core's sealed
    unpickler, never ``pickle.load``) with UER names, bare (``embedding.*``, ``encoder.transformer.{i}.*``,
    ``target.*``) or under ``pre_encoder.`` (the ``TableTextPretraining`` wrapper, whose own heads ``mlm_linear_*``,
    ``layer_norm``, ``enc_h``, ``enc_n``, ``mlp_all`` are known and unused). The config comes from a UER JSON
    beside the file (``emb_size, feedforward_size, hidden_size, heads_num, layers_num, dropout``) or is inferred
    from the shapes (heads = hidden / 64, as every released config has).
Every key is mapped, dropped by a named rule, or an error naming it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint import CheckpointError, load_state_dict_file, rename_keys
from alicemind.core.checkpoint.bert_names import CORE_TO_BERT_LAYER
from alicemind.core.modeling import LoadedCheckpoint
from alicemind.sdcup.config import SdcupConfig

logger = logging.getLogger(__name__)

UER_TO_OURS = [
    (r"^embedding\.word_embedding\.", "embeddings.word_embeddings."),
    (r"^embedding\.position_embedding\.", "embeddings.position_embeddings."),
    (r"^embedding\.segment_embedding\.", "embeddings.token_type_embeddings."),
    (r"^embedding\.layer_norm\.gamma$", "embeddings.norm.weight"),
    (r"^embedding\.layer_norm\.beta$", "embeddings.norm.bias"),
    (r"^encoder\.transformer\.(\d+)\.self_attn\.linear_layers\.0\.", r"encoder.layers.\1.self_attn.q_proj."),
    (r"^encoder\.transformer\.(\d+)\.self_attn\.linear_layers\.1\.", r"encoder.layers.\1.self_attn.k_proj."),
    (r"^encoder\.transformer\.(\d+)\.self_attn\.linear_layers\.2\.", r"encoder.layers.\1.self_attn.v_proj."),
    (r"^encoder\.transformer\.(\d+)\.self_attn\.final_linear\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^encoder\.transformer\.(\d+)\.layer_norm_1\.gamma$", r"encoder.layers.\1.self_attn_norm.weight"),
    (r"^encoder\.transformer\.(\d+)\.layer_norm_1\.beta$", r"encoder.layers.\1.self_attn_norm.bias"),
    (r"^encoder\.transformer\.(\d+)\.feed_forward\.linear_1\.", r"encoder.layers.\1.ffn.fc_in."),
    (r"^encoder\.transformer\.(\d+)\.feed_forward\.linear_2\.", r"encoder.layers.\1.ffn.fc_out."),
    (r"^encoder\.transformer\.(\d+)\.layer_norm_2\.gamma$", r"encoder.layers.\1.ffn_norm.weight"),
    (r"^encoder\.transformer\.(\d+)\.layer_norm_2\.beta$", r"encoder.layers.\1.ffn_norm.bias"),
]
# UER's MLM target -> our SdcupForPreTraining.mlm (read by that class only).
UER_MLM_TO_OURS = [
    (r"^target\.mlm_linear_1\.", "mlm.dense."),
    (r"^target\.layer_norm\.gamma$", "mlm.norm.weight"),
    (r"^target\.layer_norm\.beta$", "mlm.norm.bias"),
    (r"^target\.mlm_linear_2\.", "mlm.decoder."),
]
# Known keys with no place in our models: UER's NSP target; the wrapper's unused heads (models-language.md §5.4).
UER_UNUSED = {
    "uer-nsp-target": r"^target\.nsp_linear_[12]\.",
    "wrapper-mlm": r"^(mlm_linear_[12]|layer_norm)\.",
    "wrapper-bilstm": r"^(enc_h|enc_n)\.",
    "wrapper-mlp": r"^mlp_all\.",
}
WRAPPER_PREFIXES = ("module.pre_encoder.", "pre_encoder.", "module.")


def _uer_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    found = sorted(p for p in path.iterdir() if re.search(r"\.bin(-\d+)?$", p.name)) if path.is_dir() else []
    return found[0] if len(found) == 1 else None


def _uer_jsons(path: Path) -> list[dict[str, Any]]:
    """The UER model configs beside ``path`` (``models/*config*.json``: base, large, lite ... may all be there)."""
    found = []
    for candidate in sorted(path.parent.glob("*config*.json")):
        data = json.loads(candidate.read_text(encoding="utf-8"))
        if isinstance(data, dict) and ("layers_num" in data or "heads_num" in data):
            found.append(data)
    return found


def _matching(uers: list[dict[str, Any]], state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The one config whose sizes are those of the weights (None if none is there; several = the first)."""
    hidden = state["embedding.word_embedding.weight"].shape[1]
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.transformer\.(\d+)\.", k)))
    fits = [u for u in uers if u.get("hidden_size", hidden) == hidden and u.get("layers_num", layers) == layers]
    if uers and not fits:
        raise CheckpointError(f"no UER config beside the file has hidden_size={hidden}, layers_num={layers}")
    return fits[0] if fits else None


def config_from_uer(state: dict[str, torch.Tensor], uer: dict[str, Any] | None, **overrides: Any) -> SdcupConfig:
    """An SdcupConfig from a UER JSON (when given) and the tensor shapes."""
    vocab, hidden = state["embedding.word_embedding.weight"].shape
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.transformer\.(\d+)\.", k)))
    ffn = state["encoder.transformer.0.feed_forward.linear_1.weight"].shape[0]
    values = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, intermediate_size=ffn,
                  num_attention_heads=max(1, hidden // 64),
                  max_position_embeddings=state["embedding.position_embedding.weight"].shape[0],
                  type_vocab_size=state["embedding.segment_embedding.weight"].shape[0])  # fmt: skip
    if uer:
        for ours, theirs in (("num_attention_heads", "heads_num"), ("hidden_dropout_prob", "dropout"),
                             ("attention_probs_dropout_prob", "dropout")):  # fmt: skip
            if theirs in uer:
                values[ours] = uer[theirs]
        for ours, theirs in (("hidden_size", "hidden_size"), ("num_hidden_layers", "layers_num"),
                             ("intermediate_size", "feedforward_size")):  # fmt: skip
            if theirs in uer and uer[theirs] != values[ours]:
                raise CheckpointError(f"the UER config says {theirs}={uer[theirs]} but the weights have {values[ours]}")
    values["max_seq_length"] = min(350, values["max_position_embeddings"])
    return SdcupConfig(**{**values, **overrides})


def read_uer_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The UER state dict with any wrapper prefix removed, and the prefix that was found."""
    raw = load_state_dict_file(path)
    for prefix in WRAPPER_PREFIXES:
        if any(k.startswith(prefix + "embedding.") for k in raw):
            inner = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
            outer = {k: v for k, v in raw.items() if not k.startswith(prefix)}
            return {**outer, **inner}, prefix
    if "embedding.word_embedding.weight" not in raw:
        raise CheckpointError(f"{path}: not a UER BERT file (no embedding.word_embedding.weight; keys {list(raw)[:8]})")
    return raw, ""


def read_sdcup_checkpoint(cls, path: Path, **overrides: Any) -> LoadedCheckpoint:
    """Read our folder or a released UER file (see the module docstring) for model class ``cls``."""
    from alicemind.core.modeling import PreTrainedModel

    if path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return PreTrainedModel.read_checkpoint.__func__(cls, path, **overrides)
    uer_file = _uer_file(path)
    if uer_file is None:
        raise CheckpointError(f"{path}: neither our folder (config.json + model.safetensors) nor one UER .bin file")
    state, prefix = read_uer_state(uer_file)
    config = config_from_uer(state, _matching(_uer_jsons(uer_file), state), **overrides)
    rules = UER_TO_OURS + (UER_MLM_TO_OURS if cls.reads_uer_mlm else [])
    mapped, unused = {}, []
    for key, value in state.items():
        renamed = rename_keys({key: value}, rules)
        new = next(iter(renamed))
        if new != key:
            mapped[cls.encoder_prefix + new if not new.startswith("mlm.") else new] = value
        elif any(re.search(p, key) for p in (*UER_UNUSED.values(), r"^target\.")):
            unused.append(key)
        else:
            raise CheckpointError(f"{uer_file}: key {key!r} is not a known UER/SDCUP name")
    if unused:
        logger.info("%s: %d known head key(s) not used by %s: %s", uer_file, len(unused), cls.__name__, unused[:6])
    logger.info("%s: UER layout (prefix %r)", uer_file, prefix)
    return LoadedCheckpoint(config, mapped, "uer" if not prefix else f"uer ({prefix.rstrip('.')} wrapper)")


# -- ours -> Hugging Face BERT -----------------------------------------------------------------------------------
OURS_TO_HF = [
    (r"^embeddings\.norm\.weight$", "embeddings.LayerNorm.weight"),
    (r"^embeddings\.norm\.bias$", "embeddings.LayerNorm.bias"),
    *CORE_TO_BERT_LAYER,
]
HF_EXPORT_NOTE = (
    "Exported from SDCUP (UER BERT). Hugging Face BertModel normalises with sqrt(var + eps); SDCUP with std + eps "
    "(eps = 1e-6, population std). layer_norm_eps is set to eps**2 = 1e-12, which matches to within about "
    "eps/std relative per norm; outputs are close, not bit-equal. Segment ids: 1 question, 2 schema, 0 padding; "
    "pass attention_mask = token_type_ids > 0."
)


def export_huggingface_bert(encoder, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write a Hugging Face ``BertModel`` folder (config.json with the arithmetic note, model.safetensors).

    ``overwrite``: replace a folder that holds files other than a model's (otherwise that is an error).
    """
    from alicemind.core.checkpoint import save_safetensors
    from alicemind.core.io import atomic_folder

    c = encoder.config
    tensors = rename_keys({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, OURS_TO_HF)
    hf = {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads, "intermediate_size": c.intermediate_size,
        "hidden_act": "gelu", "hidden_dropout_prob": c.hidden_dropout_prob,
        "attention_probs_dropout_prob": c.attention_probs_dropout_prob,
        "max_position_embeddings": c.max_position_embeddings, "type_vocab_size": c.type_vocab_size,
        "initializer_range": c.initializer_range, "layer_norm_eps": c.layer_norm_eps**2, "pad_token_id": 0,
        "position_embedding_type": "absolute", "alicemind_note": HF_EXPORT_NOTE,
    }  # fmt: skip
    path = Path(directory)
    with atomic_folder(path, overwrite=overwrite) as staging:
        (staging / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
        save_safetensors(tensors, staging / "model.safetensors", metadata={"format": "pt"})
    return path
