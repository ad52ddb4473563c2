"""The released StructVBERT files -> our models (``read_structvbert_checkpoint`` says which layout it found).

Layouts:
  * ``alicemind``: our folder (``config.json`` + ``model.safetensors``);
  * ``structvbert-release``: the released ``pretrained_model/`` folder (``pytorch_model.bin`` + ``bert_config.json``,
    LXMERT key names: ``bert.*``, ``cls.*``, ``obj_predict_head.*``, ``answer_head.logit_fc.*``);
  * ``structvbert-finetuned``: a ``BEST.pth``/``LAST.pth`` of the original VQA or NLVR2 scripts
    (``lxrt_encoder.model.bert.*`` + ``logit_fc.*``).

Every key is accounted for: mapped to one of our weights, a named head of another class (not loaded, logged), or
a :class:`CheckpointError` naming it. Legacy files are read with core's sealed unpickler (no code runs).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint import CheckpointError, load_state_dict_file, rename_keys
from alicemind.core.checkpoint.bert_names import BERT_LAYER_TO_CORE
from alicemind.core.config import CONFIG_NAME, read_json_file
from alicemind.core.modeling import WEIGHTS_NAME, LoadedCheckpoint
from alicemind.structvbert.answers import normalize_answer, read_answer_list
from alicemind.structvbert.config import StructVBertConfig

logger = logging.getLogger(__name__)

RELEASE_CONFIG = "bert_config.json"
RELEASE_WEIGHTS = ("pytorch_model.bin", "BEST.pth", "LAST.pth")
LABEL2ANS_FILE = "trainval_label2ans.json"
BERT_CONFIG_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "hidden_act", "intermediate_size",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
    "initializer_range",
)  # fmt: skip
# What the original ``from_pretrained`` renames before loading (lxrt/modeling.py).
LEGACY_RENAMES = [
    (r"^module\.", ""),
    (r"^lxrt_encoder\.model\.", ""),
    (r"\.gamma$", ".weight"),
    (r"\.beta$", ".bias"),
    (r"^lm_bias$", "cls.predictions.bias"),
    (r"^linear\.", "cls.predictions.transform.dense."),
    (r"^LayerNorm\.(weight|bias)$", r"cls.predictions.transform.LayerNorm.\1"),
]
# Release names (under "bert.") -> ours.
BACKBONE = [
    (r"^embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"^encoder\.visn_fc\.visn_fc\.", "visual.visn_fc."),
    (r"^encoder\.visn_fc\.(visn_layer_norm|box_fc|box_layer_norm)\.", r"visual.\1."),
    *BERT_LAYER_TO_CORE,
]
_OUR_BACKBONE = re.compile(
    r"^(embeddings\.(word_embeddings|position_embeddings|token_type_embeddings|norm)\.|visual\.|encoder\.layers\.\d+\."
    r"(self_attn\.(q|k|v|out)_proj|self_attn_norm|ffn\.fc_(in|out)|ffn_norm)\.|pooler\.dense\.)"
)
PRETRAINING_HEADS = [
    (r"^cls\.predictions\.transform\.dense\.", "cls_predictions.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "cls_predictions.norm."),
    (r"^cls\.predictions\.bias$", "cls_predictions.bias"),
    (r"^cls\.seq_relationship\.", "cls_seq_relationship."),
    (r"^obj_predict_head\.transform\.dense\.", "obj_predict_head.dense."),
    (r"^obj_predict_head\.transform\.LayerNorm\.", "obj_predict_head.norm."),
    (r"^obj_predict_head\.decoder_dict\.", "obj_predict_head.decoder_dict."),
    (r"^answer_head\.logit_fc\.", "answer_head."),
]
HEAD_KEYS = re.compile(r"^(cls\.|obj_predict_head\.|answer_head\.|logit_fc\.)")
TIED_DUPLICATE = "cls.predictions.decoder.weight"  # the word table again (tied)


def config_from_release(path: Path, state: Mapping[str, torch.Tensor], **overrides: Any) -> StructVBertConfig:
    """``bert_config.json`` + the visual sizes read off the weights -> our config."""
    data = {k: v for k, v in dict(read_json_file(path)).items() if k in BERT_CONFIG_FIELDS}
    fc = state.get("bert.encoder.visn_fc.visn_fc.weight")
    box = state.get("bert.encoder.visn_fc.box_fc.weight")
    if fc is None or box is None:
        raise CheckpointError(f"{path.parent}: no bert.encoder.visn_fc.* weights: not a StructVBERT checkpoint")
    data.update(visual_feat_dim=int(fc.shape[1]), visual_pos_dim=int(box.shape[1]))
    for name, field in (("obj", "num_object_labels"), ("attr", "num_attribute_labels")):
        weight = state.get(f"obj_predict_head.decoder_dict.{name}.weight")
        if weight is not None:
            data[field] = int(weight.shape[0])
    return StructVBertConfig.from_dict(data, **overrides)


def remap_answer_rows(
    weight: torch.Tensor, bias: torch.Tensor, source_answers: Sequence[str], target_answers: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The original ``load_lxmert_qa`` surgery: row ``i`` of the new head is the pre-trained row of the
    normalised ``target_answers[i]`` in ``source_answers``; answers not found get zero rows. Returns the new
    weight, bias and how many answers were found."""
    if len(source_answers) != weight.shape[0]:
        raise CheckpointError(
            f"the answer table lists {len(source_answers)} answers but the pre-trained head has {weight.shape[0]} rows"
        )
    index = {answer: i for i, answer in enumerate(source_answers)}
    new_weight = weight.new_zeros(len(target_answers), weight.shape[1])
    new_bias = bias.new_zeros(len(target_answers))
    found = 0
    for row, answer in enumerate(target_answers):
        source = index.get(normalize_answer(answer))
        if source is not None:
            new_weight[row], new_bias[row] = weight[source], bias[source]
            found += 1
    return new_weight, new_bias, found


def _release_weights(path: Path) -> Path | None:
    if path.is_file():
        return path
    return next((path / name for name in RELEASE_WEIGHTS if (path / name).is_file()), None)


def _backbone(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split into our encoder keys and the (release-named) head keys; anything else is an error naming it."""
    if not any(k.startswith("bert.") for k in state):
        state = {(k if HEAD_KEYS.match(k) else f"bert.{k}"): v for k, v in state.items()}  # as the original does
    backbone, heads = {}, {}
    for key, value in state.items():
        if key.startswith("bert."):
            backbone[key[5:]] = value
        elif HEAD_KEYS.match(key):
            heads[key] = value
        else:
            raise CheckpointError(f"{source}: key {key!r} {tuple(value.shape)} is not a StructVBERT weight")
    backbone = rename_keys(backbone, BACKBONE)
    for key in backbone:
        if not _OUR_BACKBONE.match(key):
            raise CheckpointError(f"{source}: key 'bert.{key}' is not a StructVBERT encoder weight")
    return backbone, heads


def _heads_for(model_class, heads: dict[str, torch.Tensor], config: StructVBertConfig, answer_table, source: str):
    """The head weights ``model_class`` takes out of the release's heads, and the names it leaves unused."""
    kind = model_class.head_kind
    taken: dict[str, torch.Tensor] = {}
    if kind == "pretraining":
        rest = {k: v for k, v in heads.items() if not k.startswith("logit_fc.") and k != TIED_DUPLICATE}
        taken = rename_keys(rest, PRETRAINING_HEADS)
        if config.num_answers == 0:
            taken = {k: v for k, v in taken.items() if not k.startswith("answer_head.")}
    elif kind in ("vqa", "nlvr2") and any(k.startswith("logit_fc.") for k in heads):
        taken = {k: v for k, v in heads.items() if k.startswith("logit_fc.")}
        want = 2 * config.hidden_size if kind == "nlvr2" else config.hidden_size
        got = int(taken["logit_fc.0.weight"].shape[1]) if "logit_fc.0.weight" in taken else want
        if got != want:
            other = "VQA" if kind == "nlvr2" else "NLVR2"
            raise CheckpointError(
                f"{source}: its logit_fc is an {other} head (input {got}), not {model_class.__name__}'s"
            )
    elif kind == "vqa" and "answer_head.logit_fc.3.weight" in heads:
        for i in (0, 2):
            for p in ("weight", "bias"):
                taken[f"logit_fc.{i}.{p}"] = heads[f"answer_head.logit_fc.{i}.{p}"]
        if answer_table is not None:
            source_answers = read_answer_list(answer_table)
            weight, bias, found = remap_answer_rows(heads["answer_head.logit_fc.3.weight"],
                                                    heads["answer_head.logit_fc.3.bias"], source_answers,
                                                    config.answers)  # fmt: skip
            taken.update({"logit_fc.3.weight": weight, "logit_fc.3.bias": bias})
            logger.info(
                "%s: %d of %d answers found in the pre-trained answer table", source, found, len(config.answers)
            )
    if kind == "pretraining":  # everything but a fine-tuned head was renamed into ours
        unused = [
            k for k in heads if k.startswith("logit_fc.") or (k.startswith("answer_head.") and not config.num_answers)
        ]
    else:
        unused = [k for k in heads if k not in taken and not k.startswith("answer_head.logit_fc.")]
        unused += [k for k in heads if k.startswith("answer_head.") and k not in taken and kind != "vqa"]
    return taken, sorted(set(unused))


def _normalise_own(model_class, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Our folder of another class: an encoder folder into a head model, or a head folder's encoder."""
    wants_prefix = model_class.head_kind != "model"
    has_prefix = any(k.startswith("bert.") for k in state)
    if wants_prefix and not has_prefix:
        return {f"bert.{k}": v for k, v in state.items()}, ()
    if not wants_prefix and has_prefix:
        return {k[5:]: v for k, v in state.items() if k.startswith("bert.")}, ()
    return state, (r"^cls_predictions\.", r"^cls_seq_relationship\.", r"^obj_predict_head\.", r"^answer_head\.",
                   r"^logit_fc\.")  # fmt: skip


def read_structvbert_checkpoint(model_class, path: Path, **overrides: Any) -> LoadedCheckpoint:
    """Read our folder, the released ``pretrained_model/`` folder or a fine-tuned ``BEST.pth`` for ``model_class``.

    ``answer_table=`` (the release's ``all_ans.json``, or a list) remaps the pre-trained answer head onto
    ``answers=`` (the fine-tune label2ans) when a VQA model is built from the pre-trained file.
    """
    answer_table = overrides.pop("answer_table", None)
    if path.is_dir() and (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        if answer_table is not None:
            raise ValueError(f"{path}: answer_table= remaps the released pre-trained answer head; this is our folder")
        config = StructVBertConfig.from_json_file(path / CONFIG_NAME, **overrides)
        state, unused = _normalise_own(model_class, load_state_dict_file(path / WEIGHTS_NAME))
        if model_class.head_kind == "pretraining":
            state["cls_predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
        return LoadedCheckpoint(config, state, "alicemind", ignore_unexpected=unused)
    weights = _release_weights(path)
    if weights is None:
        raise FileNotFoundError(
            f"{path}: neither our folder (config.json + model.safetensors) nor a StructVBERT release "
            f"({' / '.join(RELEASE_WEIGHTS)} + {RELEASE_CONFIG})"
        )
    folder = weights.parent
    config_file = next((folder / n for n in (RELEASE_CONFIG, CONFIG_NAME) if (folder / n).is_file()), None)
    if config_file is None:
        raise CheckpointError(f"{folder}: no {RELEASE_CONFIG} beside {weights.name}")
    state = rename_keys(load_state_dict_file(weights), LEGACY_RENAMES)
    finetuned = any(k.startswith("logit_fc.") for k in state)
    if model_class.head_kind == "vqa" and "answers" not in overrides and (folder / LABEL2ANS_FILE).is_file():
        overrides["answers"] = list(json.loads((folder / LABEL2ANS_FILE).read_text(encoding="utf-8")))
    config = config_from_release(config_file, state, **overrides)
    backbone, heads = _backbone(state, str(weights))
    taken, unused = _heads_for(model_class, heads, config, answer_table, str(weights))
    prefix = "" if model_class.head_kind == "model" else "bert."
    out = {prefix + k: v for k, v in backbone.items()} | taken
    if model_class.head_kind == "pretraining":
        out["cls_predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
    if unused:
        logger.info("%s: %d head weight(s) not used by %s: %s", weights, len(unused), model_class.__name__, unused[:6])
    fmt = "structvbert-finetuned" if finetuned else "structvbert-release"
    return LoadedCheckpoint(config, out, fmt, ignore_unexpected=tuple(rf"^{re.escape(k)}$" for k in unused))
