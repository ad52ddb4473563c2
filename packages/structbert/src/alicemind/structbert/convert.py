"""Every released StructBERT layout -> our models, and our models -> Hugging Face BERT key names.

Layouts read (``read_structbert_checkpoint`` tells which it found):
  * ``alicemind``: our folder (config.json + model.safetensors written by ``save_pretrained``);
  * ``structbert-release``: the original ``en_model`` / ``ch_model`` files: a pickled PyTorch state dict with
    ``LayerNorm.gamma/beta``, bare ``BertModel`` keys or ``bert.`` / ``module.bert.`` prefixes, fine-tuned files with
    ``classifier.{k}.*`` multi-task heads; no config inside (taken from a config file beside it, or inferred);
  * ``sofa``: the sofa tarball folders (``model_type: sbert``, Hugging Face layout);
  * ``huggingface-bert``: a Hugging Face BERT folder (``model.safetensors`` or ``pytorch_model.bin``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint import load_state_dict_file, read_safetensors_metadata, rename_keys
from alicemind.core.modeling import LoadedCheckpoint
from alicemind.structbert.config import StructBertConfig

logger = logging.getLogger(__name__)

# Our encoder module names -> Hugging Face BertModel names (applied to keys without the "bert." prefix).
BACKBONE_TO_HF = [
    (r"^embeddings\.norm\.", "embeddings.LayerNorm."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.q_proj\.", r"encoder.layer.\1.attention.self.query."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.k_proj\.", r"encoder.layer.\1.attention.self.key."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.v_proj\.", r"encoder.layer.\1.attention.self.value."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"^encoder\.layers\.(\d+)\.self_attn_norm\.", r"encoder.layer.\1.attention.output.LayerNorm."),
    (r"^encoder\.layers\.(\d+)\.ffn\.fc_in\.", r"encoder.layer.\1.intermediate.dense."),
    (r"^encoder\.layers\.(\d+)\.ffn\.fc_out\.", r"encoder.layer.\1.output.dense."),
    (r"^encoder\.layers\.(\d+)\.ffn_norm\.", r"encoder.layer.\1.output.LayerNorm."),
]
BACKBONE_FROM_HF = [
    (r"^embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.query\.", r"encoder.layers.\1.self_attn.q_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.key\.", r"encoder.layers.\1.self_attn.k_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.value\.", r"encoder.layers.\1.self_attn.v_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"encoder.layers.\1.self_attn_norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"encoder.layers.\1.ffn.fc_in."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"encoder.layers.\1.ffn.fc_out."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"encoder.layers.\1.ffn_norm."),
]
# Head names per model class: (ours -> file) and (file -> ours). "{multi}" rules apply to multi-task heads.
HEAD_TO_HF = {
    "StructBertForPreTraining": [
        (r"^cls_predictions\.dense\.", "cls.predictions.transform.dense."),
        (r"^cls_predictions\.norm\.", "cls.predictions.transform.LayerNorm."),
        (r"^cls_predictions\.decoder\.", "cls.predictions.decoder."),
        (r"^cls_predictions\.bias$", "cls.predictions.bias"),
        (r"^cls_seq_relationship\.", "cls.seq_relationship."),
    ],
    "StructBertForQuestionAnswering": [(r"^qa\.qa_outputs\.", "qa_outputs.")],
    "single": [(r"^classifier\.classifiers\.0\.", "classifier.")],
    "multi": [(r"^classifier\.classifiers\.(\d+)\.", r"classifier.\1.")],
}
HEAD_FROM_HF = {
    "StructBertForPreTraining": [
        (r"^cls\.predictions\.transform\.dense\.", "cls_predictions.dense."),
        (r"^cls\.predictions\.transform\.LayerNorm\.", "cls_predictions.norm."),
        (r"^cls\.predictions\.decoder\.weight$", "cls_predictions.decoder.weight"),
        (r"^cls\.predictions\.bias$", "cls_predictions.bias"),
        (r"^cls\.seq_relationship\.", "cls_seq_relationship."),
    ],
    "StructBertForQuestionAnswering": [(r"^qa_outputs\.", "qa.qa_outputs.")],
    "single": [(r"^classifier\.(weight|bias)$", r"classifier.classifiers.0.\1")],
    "multi": [(r"^classifier\.(\d+)\.", r"classifier.classifiers.\1.")],
}
# File keys of each head, to tell a head that belongs to another class (dropped, with a log line) from a typo.
HEAD_FILE_KEYS = {
    "StructBertForPreTraining": r"^cls\.",
    "StructBertForSequenceClassification": r"^classifier\.",
    "StructBertForTokenClassification": r"^classifier\.",
    "StructBertForMultipleChoice": r"^classifier\.",
    "StructBertForQuestionAnswering": r"^qa_outputs\.",
}
ANY_HEAD = r"^(cls\.|classifier\.|qa_outputs\.)"
KNOWN_UNUSED = [r"(^|\.)position_ids$", r"^cls\.predictions\.decoder\.bias$"]  # buffers / a tied duplicate
CONFIG_FILENAMES = ("config.json", "bert_config.json", "large_bert_config.json", "ch_large_bert_config.json")
WEIGHT_FILENAMES = ("model.safetensors", "pytorch_model.bin", "en_model", "ch_model")


def _head_family(class_name: str) -> str:
    return "StructBertForPreTraining" if class_name == "StructBertForMaskedLM" else class_name


def _split(state: dict[str, torch.Tensor], prefix: str):
    backbone, heads = {}, {}
    for key, value in state.items():
        if prefix and key.startswith(prefix):
            backbone[key[len(prefix) :]] = value
        elif not prefix and not re.match(ANY_HEAD, key):
            backbone[key] = value
        else:
            heads[key] = value
    return backbone, heads


def to_hf_keys(state: dict[str, torch.Tensor], prefix: str, multi_task: bool) -> dict:
    """Our state dict -> Hugging Face BERT names (``prefix`` is ``"bert."`` for head models, ``""`` otherwise)."""
    backbone, heads = _split(state, prefix)
    out = {prefix + k: v for k, v in rename_keys(backbone, BACKBONE_TO_HF).items()}
    rules = HEAD_TO_HF["multi" if multi_task else "single"] + HEAD_TO_HF["StructBertForPreTraining"]
    rules += HEAD_TO_HF["StructBertForQuestionAnswering"]
    out.update(rename_keys(heads, rules))
    return out


def from_hf_keys(state: dict[str, torch.Tensor], prefix: str, multi_task: bool, class_name: str) -> dict:
    """Hugging Face BERT names (already normalised to ``prefix``) -> our module names."""
    backbone, heads = _split(state, prefix)
    out = {prefix + k: v for k, v in rename_keys(backbone, BACKBONE_FROM_HF).items()}
    rules = HEAD_FROM_HF["StructBertForPreTraining"] + HEAD_FROM_HF["StructBertForQuestionAnswering"]
    if class_name == "StructBertForSequenceClassification":
        rules += HEAD_FROM_HF["multi" if multi_task else "single"]
    out.update(rename_keys(heads, rules))
    return out


def normalise_release_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old pytorch-pretrained-bert names -> Hugging Face names: drop ``module.``, ``gamma/beta`` -> ``weight/bias``."""
    rules = [(r"^module\.", ""), (r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias")]
    return rename_keys(state, rules)


def infer_config(state: dict[str, torch.Tensor]) -> StructBertConfig:
    """Read the architecture off tensor shapes (heads assume 64 dims per head, as every released size has)."""
    key = next((k for k in state if k.endswith("embeddings.word_embeddings.weight")), None)
    if key is None:
        raise ValueError("cannot infer a config: no embeddings.word_embeddings.weight in the checkpoint")
    base = key[: -len("embeddings.word_embeddings.weight")]
    vocab, hidden = state[key].shape
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(re.escape(base) + r"encoder\.layer\.(\d+)\.", k)))
    return StructBertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=state[f"{base}encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state[f"{base}embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state[f"{base}embeddings.token_type_embeddings.weight"].shape[0],
    )


def _read_config(path: Path, config: Any, state: dict, overrides: dict) -> StructBertConfig:
    if isinstance(config, StructBertConfig):
        return StructBertConfig.from_dict(config.to_dict(), **overrides)
    if config is not None:
        return StructBertConfig.from_json_file(config, **overrides)
    folder = path if path.is_dir() else path.parent
    for name in CONFIG_FILENAMES:
        if (folder / name).is_file():
            return StructBertConfig.from_json_file(folder / name, **overrides)
    inferred = infer_config(state)
    logger.warning("no config file beside %s: architecture inferred from tensor shapes (%s)", path, inferred)
    return StructBertConfig.from_dict(inferred.to_dict(), **overrides)


def _classifier_sizes(state: dict[str, torch.Tensor]) -> tuple[list[int] | None, int | None]:
    multi = sorted(
        (int(m.group(1)), v.shape[0]) for k, v in state.items() if (m := re.match(r"^classifier\.(\d+)\.weight$", k))
    )
    single = state.get("classifier.weight")
    return ([n for _, n in multi] or None), (single.shape[0] if single is not None else None)


def _find_weights(path: Path) -> Path:
    if path.is_file():
        return path
    for name in WEIGHT_FILENAMES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} holds none of {WEIGHT_FILENAMES}")


def detect_format(path: Path, weights: Path) -> str:
    """Name the layout of a checkpoint folder or file."""
    if path.is_file():
        return "structbert-release" if weights.suffix not in (".safetensors",) else "safetensors-file"
    cfg = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    if cfg.get("model_type") == "sbert":
        return "sofa"
    if weights.suffix == ".safetensors":
        if read_safetensors_metadata(weights).get("model_class", "").startswith("StructBert"):
            return "alicemind"
    if weights.name in ("en_model", "ch_model"):
        return "structbert-release"
    return "huggingface-bert"


def read_structbert_checkpoint(cls, path: Path, *, config: Any = None, **overrides: Any) -> LoadedCheckpoint:
    """Read any StructBERT layout for model class ``cls`` (see module docstring)."""
    weights = _find_weights(path)
    fmt = detect_format(path, weights)
    state = normalise_release_keys(load_state_dict_file(weights))
    class_name = cls.__name__
    prefix = "" if class_name == "StructBertModel" else "bert."
    # Put the encoder under the prefix this class expects, whichever layout the file used.
    has_prefixed = any(k.startswith("bert.") for k in state)
    if prefix and not has_prefixed:
        state = {(k if re.match(ANY_HEAD, k) else prefix + k): v for k, v in state.items()}
    elif not prefix and has_prefixed:
        state = {(k[5:] if k.startswith("bert.") else k): v for k, v in state.items()}
    multi_sizes, single_size = _classifier_sizes(state)
    if class_name == "StructBertForSequenceClassification":
        if multi_sizes and "task_num_labels" not in overrides:
            overrides["task_num_labels"] = multi_sizes
        elif single_size and "num_labels" not in overrides:
            overrides["num_labels"] = single_size
    cfg = _read_config(path, config, {k: v for k, v in state.items() if not re.match(ANY_HEAD, k)}, overrides)
    ignore = list(KNOWN_UNUSED)
    own_heads = HEAD_FILE_KEYS.get(_head_family(class_name))
    foreign = [k for k in state if re.match(ANY_HEAD, k) and not (own_heads and re.match(own_heads, k))]
    if class_name in ("StructBertForTokenClassification", "StructBertForQuestionAnswering"):
        foreign += [k for k in state if k.startswith(prefix + "pooler.")]
    if foreign:
        logger.warning("%s does not use these weights of %s, dropping them: %s", class_name, path, sorted(foreign))
        state = {k: v for k, v in state.items() if k not in foreign}
    if class_name.startswith("StructBertFor") and "cls.predictions.decoder.weight" not in state:
        word = state.get(prefix + "embeddings.word_embeddings.weight")
        if word is not None and any(k.startswith("cls.predictions.") for k in state):
            state["cls.predictions.decoder.weight"] = word  # tied in the model; some writers omit the duplicate
    ours = from_hf_keys(state, prefix, bool(cfg.task_num_labels), class_name)
    return LoadedCheckpoint(cfg, ours, fmt, ignore_unexpected=tuple(ignore))
