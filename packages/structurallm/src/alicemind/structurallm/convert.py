"""The released StructuralLM TF1 checkpoint -> our models (``read_structurallm_checkpoint`` says which it found),
and ours -> ``transformers.LayoutLMModel`` where that peer can hold the same function.

Layouts:
  * ``alicemind``: our folder (``config.json`` with ``model_type: structurallm`` + ``model.safetensors``);
  * ``structurallm-tf1``: the released ``structural_lm_models/`` folder (``checkpoint``, ``model.ckpt-160000.*``),
    a ``model.ckpt-N`` prefix, or a fine-tuned output of the original script; read with core's TF1 reader. The
    config is the release's BERT-field ``config.json`` beside it, else the ``structurallm.en.large`` preset.

Every TF variable is accounted for: mapped to one of our weights, skipped by a named rule (optimizer slots, step
counters, the token-type table RoBERTa mode never adds), or reported as another head's. Anything else, a missing
variable or a wrong shape, is a :class:`CheckpointError` naming the variable.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alicemind.core.checkpoint import CheckpointError, load_state_dict_file, load_tf_checkpoint, rename_keys
from alicemind.core.checkpoint.bert_names import CORE_TO_BERT_LAYER
from alicemind.core.checkpoint.tf1_bert import bert_layer_variables, tf_dense, tf_norm
from alicemind.core.config import CONFIG_NAME, read_json_file
from alicemind.core.modeling import WEIGHTS_NAME, LoadedCheckpoint
from alicemind.structurallm.config import StructuralLMConfig

logger = logging.getLogger(__name__)

RELEASED_PRESET = "structurallm.en.large"
BBOX_TABLE = "bert/embeddings/bbox_embeddings"
SKIP_RULES = [
    (r"/(adam_m|adam_v|Adam|Adam_1|Momentum)$", "optimizer slot"),
    (r"^(global_step|beta1_power|beta2_power|loss_scale|good_steps|current_loss_scale)$", "training counter"),
    (r"^bert/embeddings/token_type_embeddings$", "token-type table, never added in RoBERTa mode"),
    (r"^cls/seq_relationship/", "next-sentence head of the RoBERTa initialisation, unused by StructuralLM"),
]
# Head variables of each head kind: TF name -> (our name, transpose kernel?).
TF_HEADS: dict[str, dict[str, tuple[str, bool]]] = {
    "pretraining": {
        "cls/predictions/transform/dense/kernel": ("cls_predictions.dense.weight", True),
        "cls/predictions/transform/dense/bias": ("cls_predictions.dense.bias", False),
        "cls/predictions/transform/LayerNorm/gamma": ("cls_predictions.norm.weight", False),
        "cls/predictions/transform/LayerNorm/beta": ("cls_predictions.norm.bias", False),
        "cls/predictions/output_bias": ("cls_predictions.bias", False),
    },
    "token-classification": {
        "cls/squad/output_weights": ("classifier.weight", False),  # [num_labels, H]: no transpose
        "cls/squad/output_bias": ("classifier.bias", False),
    },
    "model": {},
    "qa": {},
    "sequence-classification": {},
}
ANY_HEAD = r"^cls/"


def backbone_variables(config: StructuralLMConfig, *, pooler: bool = True) -> dict[str, tuple[str, bool]]:
    """TF name -> (our encoder key, transpose?) for every encoder variable of the released layout."""
    e = "bert/embeddings"
    out: dict[str, tuple[str, bool]] = {
        f"{e}/word_embeddings": ("embeddings.text.word_embeddings.weight", False),
        **tf_norm(f"{e}/LayerNorm", "embeddings.text.norm"),
    }
    for axis in ("x0", "y0", "x1", "y1"):
        out[f"{e}/pos_{axis}_embeddings"] = (f"embeddings.layout.{axis}_embeddings.weight", False)
    if config.use_position_embeddings:
        out[f"{e}/position_embeddings"] = ("embeddings.text.position_embeddings.weight", False)
    if config.use_bbox_pos:
        out[f"{e}/bbox_embeddings"] = ("embeddings.bbox_embeddings.weight", False)
    out.update(bert_layer_variables(config.num_hidden_layers))
    if pooler:
        out.update(tf_dense("bert/pooler/dense", "pooler.dense"))
    return out


def config_from_release(path: Path, **overrides: Any) -> StructuralLMConfig:
    """The release's BERT-field ``config.json`` -> our config (its ``attention_type`` kept, RoBERTa positions)."""
    data = dict(read_json_file(path))
    if data.get("hidden_act") == "gelu":
        data["hidden_act"] = "geluerf"  # StructuralLM's TF gelu is exact erf (errata 10)
    return StructuralLMConfig.from_dict(data, **overrides)


def find_tf_prefix(path: Path) -> Path | None:
    """The checkpoint prefix: the one a ``checkpoint`` file names, the newest ``*.index`` of a folder (or of its
    single sub-folder, as the tarball extracts), or a given prefix."""
    if not path.is_dir():
        if Path(f"{path}.index").is_file():
            return path
        return path.with_suffix("") if path.suffix == ".index" and path.is_file() else None
    state = path / "checkpoint"
    if state.is_file():
        match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', state.read_text(), re.M)
        if match:
            for prefix in (path / match.group(1), path / Path(match.group(1)).name):  # the tarball was moved
                if Path(f"{prefix}.index").is_file():
                    return prefix
    indexes = sorted(path.glob("*.index"))
    if not indexes:
        subfolders = [p for p in path.iterdir() if p.is_dir() and any(p.glob("*.index"))]
        return find_tf_prefix(subfolders[0]) if len(subfolders) == 1 else None
    steps = {p: int(m.group(1)) if (m := re.search(r"-(\d+)\.index$", p.name)) else -1 for p in indexes}
    return max(indexes, key=lambda p: steps[p]).with_suffix("")  # the newest step, as TF's restore would pick


def _expected_shapes(model_class, config: StructuralLMConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = model_class(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_tf_variables(
    tensors: dict[str, np.ndarray],
    model_class,
    config: StructuralLMConfig,
    *,
    source: str = "checkpoint",
    optional: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """TF variables -> our state dict for ``model_class``, every variable accounted for (see module doc); the TF
    names in ``optional`` may be absent (their weights start fresh)."""
    head_kind = model_class.head_kind
    prefix = "" if head_kind == "model" else "bert."  # the encoder sits under "bert." in head models
    expected = _expected_shapes(model_class, config)
    has_pooler = any(k.startswith(prefix + "pooler.") for k in expected)
    mapping = {tf: (prefix + ours, t) for tf, (ours, t) in backbone_variables(config, pooler=has_pooler).items()}
    mapping.update(TF_HEADS[head_kind])
    state: dict[str, torch.Tensor] = {}
    skipped: dict[str, int] = {}
    for name, array in tensors.items():
        target = mapping.get(name)
        if target is None:
            reason = next((why for rule, why in SKIP_RULES if re.search(rule, name)), None)
            if reason is None and (re.match(ANY_HEAD, name) or name.startswith("bert/pooler/")):
                reason = f"not used by {model_class.__name__}"
            if reason is None and re.match(r"^bert/embeddings/(position|bbox)_embeddings$", name):
                reason = "table switched off in this config (use_position_embeddings / use_bbox_pos)"
            if reason is None:
                raise CheckpointError(
                    f"{source}: variable {name!r} {tuple(array.shape)} is not a StructuralLM variable"
                )
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        key, transpose = target
        value = torch.from_numpy(np.ascontiguousarray(array.T if transpose else array)).float()
        if tuple(value.shape) != expected[key]:
            want = expected[key][::-1] if transpose else expected[key]
            raise CheckpointError(
                f"{source}: variable {name!r} has shape {tuple(array.shape)}, expected {want} for this config"
            )
        state[key] = value
    backbone = [tf for tf, (key, _) in mapping.items()
                if key not in state and tf not in TF_HEADS[head_kind] and tf not in optional]  # fmt: skip
    if backbone:
        more = f" (and {len(backbone) - 1} more)" if len(backbone) > 1 else ""
        raise CheckpointError(f"{source}: missing variable {backbone[0]!r}{more}")
    if head_kind == "pretraining":
        state["cls_predictions.decoder.weight"] = state["bert.embeddings.text.word_embeddings.weight"]
    for reason, count in sorted(skipped.items()):
        logger.info("%s: skipped %d variable(s): %s", source, count, reason)
    return state


# Keys of our folders that another class may not have (its heads; the pooler of a tagging or QA model).
_HEAD_KEYS = (r"^(bert\.)?pooler\.", r"^cls_predictions\.", r"^cpc\.", r"^classifier\.", r"^qa\.")


def _normalise_own(model_class, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Our folders of another class: an encoder folder into a head model, or a head folder's encoder."""
    wants_prefix = model_class.head_kind != "model"
    has_prefix = any(k.startswith("bert.") for k in state)
    if wants_prefix and not has_prefix:
        return {f"bert.{k}": v for k, v in state.items()}, _HEAD_KEYS
    if not wants_prefix and has_prefix:
        return {k[5:]: v for k, v in state.items() if k.startswith("bert.")}, _HEAD_KEYS
    return state, _HEAD_KEYS  # another class's head in the same folder is not loaded


def read_structurallm_checkpoint(model_class, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
    """Read our folder or a released TF1 folder for ``model_class``."""
    config_given = config_overrides.pop("config", None)
    ours = path.is_dir() and (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()
    if ours:
        config = config_given or StructuralLMConfig.from_json_file(path / CONFIG_NAME, **config_overrides)
        state, unused = _normalise_own(model_class, load_state_dict_file(path / WEIGHTS_NAME))
        if model_class.head_kind == "pretraining" and "cls_predictions.decoder.weight" not in state:
            state["cls_predictions.decoder.weight"] = state["bert.embeddings.text.word_embeddings.weight"]
        has_pooler = any(k.startswith(("pooler.", "bert.pooler.")) for k in state)
        no_pooler = () if has_pooler else (r"^(bert\.)?pooler\.",)  # a tagging/QA folder has none: start it fresh
        return LoadedCheckpoint(config, state, "alicemind", ignore_missing=no_pooler, ignore_unexpected=unused)
    prefix = find_tf_prefix(path)
    if prefix is None:
        raise FileNotFoundError(
            f"{path}: neither our folder (config.json + model.safetensors) nor a TF1 checkpoint (model.ckpt-N.index)"
        )
    release_config = next((p for p in (prefix.parent / CONFIG_NAME, prefix.parent.parent / "tokenizer_model" /
                           CONFIG_NAME) if p.is_file()), None)  # fmt: skip
    if config_given is not None:
        config = config_given
    elif release_config is not None:
        config = config_from_release(release_config, **config_overrides)
    else:
        config = StructuralLMConfig.from_preset(RELEASED_PRESET, **config_overrides)
    tensors = load_tf_checkpoint(prefix)
    fresh: tuple[str, ...] = ()
    if config.use_bbox_pos and BBOX_TABLE not in tensors:
        # The pre-trained release may lack the table (reference 2.4, unverified); the original's fine-tuning then
        # starts it at random. We do that only when asked for (use_bbox_pos=True); otherwise the table is off.
        if config_given is not None or config_overrides.get("use_bbox_pos"):
            fresh = (r"^(bert\.)?embeddings\.bbox_embeddings\.",)
            logger.warning("%s has no %s: it starts from random weights (use_bbox_pos=True)", prefix, BBOX_TABLE)
        else:
            config.use_bbox_pos = False
            logger.info("%s has no %s: loaded with use_bbox_pos=False", prefix, BBOX_TABLE)
    state = convert_tf_variables(
        tensors, model_class, config, source=str(prefix), optional=(BBOX_TABLE,) if fresh else ()
    )
    return LoadedCheckpoint(config, state, "structurallm-tf1", ignore_missing=fresh)


def to_layoutlm_state_dict(model) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Our encoder -> ``transformers.LayoutLMModel`` weights and config fields, where LayoutLM computes the same
    function: the x0/x1 and y0/y1 tables equal (LayoutLM shares them), no ``bbox_embeddings`` rows in use (pass
    ``use_bbox_pos=False`` or zero rows). LayoutLM's height/width and token-type tables are written as zeros, and
    the caller must pass ``position_ids = arange(L)`` + 2 (StructuralLM's rows; LayoutLM counts from 0)."""
    from alicemind.structurallm.model import StructuralLMModel

    if not isinstance(model, StructuralLMModel):
        raise TypeError(f"expected a StructuralLMModel, got {type(model).__name__}")
    c, emb = model.config, model.embeddings
    layout = emb.layout
    if not (torch.equal(layout.x0_embeddings.weight, layout.x1_embeddings.weight)
            and torch.equal(layout.y0_embeddings.weight, layout.y1_embeddings.weight)):  # fmt: skip
        raise ValueError("LayoutLM shares one x and one y table; this model's x0/x1 or y0/y1 tables differ")
    if emb.bbox_embeddings is not None and bool(emb.bbox_embeddings.weight.any()):
        raise ValueError("LayoutLM has no bbox_embeddings table; this model's is in use")
    if emb.text.position_embeddings is None:
        raise ValueError("LayoutLM always adds 1-D positions; this model has use_position_embeddings=False")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("embeddings.")}
    out = rename_keys(state, CORE_TO_BERT_LAYER)  # LayoutLM's encoder and pooler are BERT's
    zeros = torch.zeros_like(layout.x0_embeddings.weight)
    out.update({
        "embeddings.word_embeddings.weight": emb.text.word_embeddings.weight,
        "embeddings.position_embeddings.weight": emb.text.position_embeddings.weight,
        "embeddings.x_position_embeddings.weight": layout.x0_embeddings.weight,
        "embeddings.y_position_embeddings.weight": layout.y0_embeddings.weight,
        "embeddings.h_position_embeddings.weight": zeros,
        "embeddings.w_position_embeddings.weight": zeros.clone(),
        "embeddings.token_type_embeddings.weight": torch.zeros(1, c.hidden_size),
        "embeddings.LayerNorm.weight": emb.text.norm.weight,
        "embeddings.LayerNorm.bias": emb.text.norm.bias,
    })  # fmt: skip
    fields = dict(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
                  num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                  hidden_act="gelu", max_position_embeddings=c.max_position_embeddings,
                  max_2d_position_embeddings=c.max_2d_position_embeddings, type_vocab_size=1,
                  layer_norm_eps=c.layer_norm_eps, pad_token_id=c.pad_token_id)  # fmt: skip
    return {k: v.detach().clone() for k, v in out.items()}, fields
