"""The released LatticeBERT TF1 tarball folders -> our models (``read_latticebert_checkpoint`` says which it found).

Layouts:
  * ``alicemind``: our folder (``config.json`` + ``model.safetensors``);
  * ``latticebert-tf1``: a released folder (``checkpoint``, ``model.ckpt.{index,data-*}``, ``labert_config.json``,
    ``lexicon.txt``, ``vocab.txt``), or a fine-tuned output of the original scripts, read by core's TF1 reader.

Every TF variable is accounted for: mapped to one of our weights, skipped by a named rule (optimizer slots,
step counters, the port script's ``bert-1/`` / ``cls-1/`` copies), or reported as another head's. Anything else,
a missing variable or a wrong shape, is a :class:`CheckpointError` naming the variable.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alicemind.core.checkpoint import CheckpointError, load_state_dict_file, load_tf_checkpoint
from alicemind.core.config import CONFIG_NAME, read_json_file
from alicemind.core.modeling import WEIGHTS_NAME, LoadedCheckpoint
from alicemind.latticebert.config import RELEASED_GELU, LatticeBertConfig

logger = logging.getLogger(__name__)

TF_CONFIG_NAME = "labert_config.json"
# Variables that are no weights of any model, with the reason they are skipped.
SKIP_RULES = [
    (r"/(adam_m|adam_v|Adam|Adam_1|Momentum|lamb_m|lamb_v)$", "optimizer slot"),
    (r"^(global_step|beta1_power|beta2_power|loss_scale|good_steps|current_loss_scale)$", "training counter"),
    (r"^(bert|cls)-\d+/", "port script copy of the source vocabulary tables (errata 2)"),
]
# Head variables of each head kind: TF name -> (our name under the model, transpose kernel?).
TF_HEADS: dict[str, dict[str, tuple[str, bool]]] = {
    "pretraining": {
        "cls/predictions/transform/dense/kernel": ("cls_predictions.dense.weight", True),
        "cls/predictions/transform/dense/bias": ("cls_predictions.dense.bias", False),
        "cls/predictions/transform/LayerNorm/gamma": ("cls_predictions.norm.weight", False),
        "cls/predictions/transform/LayerNorm/beta": ("cls_predictions.norm.bias", False),
        "cls/predictions/output_bias": ("cls_predictions.bias", False),
        "cls/seq_relationship/output_weights": ("cls_seq_relationship.weight", False),  # [3, H]: no transpose
        "cls/seq_relationship/output_bias": ("cls_seq_relationship.bias", False),
    },
    "classifier": {"output_weights": ("classifier.weight", False), "output_bias": ("classifier.bias", False)},
    "crf": {
        "output_weights": ("classifier.weight", False),
        "output_bias": ("classifier.bias", False),
        "transition_matrix": ("crf.transitions", False),
    },
    "model": {},
    "qa": {},
}
ANY_HEAD = r"^(cls/|output_weights$|output_bias$|transition_matrix$)"
_LAYER = {
    "attention/self/query": "self_attn.q_proj",
    "attention/self/key": "self_attn.k_proj",
    "attention/self/value": "self_attn.v_proj",
    "attention/output/dense": "self_attn.out_proj",
    "attention/output/LayerNorm": "self_attn_norm",
    "intermediate/dense": "ffn.fc_in",
    "output/dense": "ffn.fc_out",
    "output/LayerNorm": "ffn_norm",
}


def _dense(tf: str, ours: str) -> dict[str, tuple[str, bool]]:
    return {f"{tf}/kernel": (f"{ours}.weight", True), f"{tf}/bias": (f"{ours}.bias", False)}


def _norm(tf: str, ours: str) -> dict[str, tuple[str, bool]]:
    return {f"{tf}/gamma": (f"{ours}.weight", False), f"{tf}/beta": (f"{ours}.bias", False)}


def backbone_variables(config: LatticeBertConfig, *, pooler: bool = True) -> dict[str, tuple[str, bool]]:
    """TF name -> (our encoder key, transpose?) for every encoder variable of the released layout."""
    out: dict[str, tuple[str, bool]] = {
        "bert/embeddings/word_embeddings": ("embeddings.word_embeddings.weight", False),
        "bert/embeddings/word_embeddings_projection": ("embeddings.word_projection.weight", True),
        "bert/embeddings/token_type_embeddings": ("embeddings.token_type_embeddings.weight", False),
        **_norm("bert/embeddings/LayerNorm", "embeddings.norm"),
        "bert/encoder/start_position_embeddings": ("position_bias.start_position_embeddings.weight", False),
        "bert/encoder/end_position_embeddings": ("position_bias.end_position_embeddings.weight", False),
        **_dense("bert/encoder/query_position", "position_bias.query_position"),
        **_dense("bert/encoder/key_position", "position_bias.key_position"),
        "bert/encoder/relative_type_embeddings_d1": ("position_bias.relative_type_embeddings.weight", False),
        "bert/encoder/relative_att_reset_theta_1": ("position_bias.reset_theta_1", False),
        "bert/encoder/relative_att_reset_theta_2": ("position_bias.reset_theta_2", False),
    }
    for i in range(4):
        out[f"bert/encoder/relative_position_scores_{i}"] = (
            f"position_bias.relative_position_scores.{i}.weight",
            False,
        )
    for layer in range(config.num_hidden_layers):
        for tf, ours in _LAYER.items():
            rule = _norm if tf.endswith("LayerNorm") else _dense
            out.update(rule(f"bert/encoder/layer_{layer}/{tf}", f"encoder.layers.{layer}.{ours}"))
    if pooler:
        out.update(_dense("bert/pooler/dense", "pooler.dense"))
    return out


def config_from_tf(path: Path, **overrides: Any) -> LatticeBertConfig:
    """``labert_config.json`` -> our config; its ``"gelu"`` is the tanh form (errata 2)."""
    data = dict(read_json_file(path))
    if "embedding_size" not in data:
        raise CheckpointError(f"{path}: no embedding_size (the released configs carry it; errata 10)")
    if data.get("hidden_act", "gelu") == "gelu":
        data["hidden_act"] = RELEASED_GELU
    return LatticeBertConfig.from_dict(data, **overrides)


def find_tf_prefix(path: Path) -> Path | None:
    """The checkpoint prefix in a folder (``checkpoint`` file first, then a single ``*.index``), or a given prefix."""
    if not path.is_dir():
        return path if Path(f"{path}.index").is_file() else (path.with_suffix("") if path.suffix == ".index" else None)
    state = path / "checkpoint"
    if state.is_file():
        match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', state.read_text(), re.M)
        if match:
            prefix = Path(match.group(1))
            prefix = prefix if prefix.is_absolute() else path / prefix
            if Path(f"{prefix}.index").is_file():
                return prefix
            local = path / prefix.name  # a tarball moved elsewhere: the path inside names the old place
            if Path(f"{local}.index").is_file():
                return local
    indexes = sorted(path.glob("*.index")) or sorted(path.glob("*/*.index"))  # a tarball's top folder
    if not (path / "checkpoint").is_file() and len({p.parent for p in indexes}) == 1 and indexes:
        nested = indexes[0].parent
        if nested != path and (nested / "checkpoint").is_file():
            return find_tf_prefix(nested)
    if len(indexes) > 1:
        raise CheckpointError(f"{path} holds {len(indexes)} TF checkpoints and no 'checkpoint' file naming one")
    return indexes[0].with_suffix("") if indexes else None


def _expected_shapes(model_class, config: LatticeBertConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = model_class(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_tf_variables(
    tensors: dict[str, np.ndarray], model_class, config: LatticeBertConfig, *, source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """TF variables -> our state dict for ``model_class``; returns it and the keys it lacks that the class may init."""
    head_kind = model_class.head_kind
    prefix = "" if head_kind == "model" else "bert."  # the encoder sits under "bert." in head models
    expected = _expected_shapes(model_class, config)
    has_pooler = any(k.startswith(prefix + "pooler.") for k in expected)
    mapping = {tf: (prefix + ours, t) for tf, (ours, t) in backbone_variables(config, pooler=has_pooler).items()}
    heads = {tf: (ours, t) for tf, (ours, t) in TF_HEADS[head_kind].items()}
    state: dict[str, torch.Tensor] = {}
    skipped: dict[str, int] = {}
    unused: list[str] = []
    for name, array in tensors.items():
        target = mapping.get(name) or heads.get(name)
        if target is None:
            reason = next((why for rule, why in SKIP_RULES if re.search(rule, name)), None)
            if reason is None and (re.match(ANY_HEAD, name) or name.startswith("bert/pooler/")):
                reason = f"not used by {model_class.__name__}"
                unused.append(name)
            if reason is None:
                raise CheckpointError(f"{source}: variable {name!r} {tuple(array.shape)} is not a LatticeBERT variable")
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        key, transpose = target
        value = torch.from_numpy(np.ascontiguousarray(array.T if transpose else array)).float()
        if key.endswith("reset_theta_1") or key.endswith("reset_theta_2"):
            value = value.reshape(-1)  # [1, 1, 1, 2E] -> [2E]
        if tuple(value.shape) != expected[key]:
            want = expected[key][::-1] if transpose else expected[key]
            raise CheckpointError(
                f"{source}: variable {name!r} has shape {tuple(array.shape)}, expected {want} for this config"
            )
        state[key] = value
    missing = [tf for tf, (key, _) in mapping.items() if key not in state]
    if missing:
        raise CheckpointError(
            f"{source}: missing variable {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    fresh = [key for tf, (key, _) in heads.items() if key not in state]
    if head_kind == "pretraining" and prefix + "embeddings.word_embeddings.weight" in state:
        state["cls_predictions.decoder.weight"] = state[prefix + "embeddings.word_embeddings.weight"]
    for reason, count in sorted(skipped.items()):
        logger.info("%s: skipped %d variable(s): %s", source, count, reason)
    return state, fresh


def _normalise_own(model_class, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Our folders of another class: an encoder folder into a head model, or a head folder's encoder."""
    wants_prefix = model_class.head_kind != "model"
    has_prefix = any(k.startswith("bert.") for k in state)
    if wants_prefix and not has_prefix:
        return {f"bert.{k}": v for k, v in state.items()}, ()
    if not wants_prefix and has_prefix:
        return {k[5:]: v for k, v in state.items() if k.startswith("bert.")}, ()
    # Heads of another class in the same folder (e.g. MLM heads when loading a classifier) are not loaded.
    return state, (r"^cls_predictions\.", r"^cls_seq_relationship\.", r"^classifier\.", r"^crf\.", r"^qa\.")


def read_latticebert_checkpoint(model_class, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
    """Read our folder or a released TF1 folder for ``model_class``."""
    config_given = config_overrides.pop("config", None)
    if path.is_dir() and (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        config = config_given or LatticeBertConfig.from_json_file(path / CONFIG_NAME, **config_overrides)
        state, unused = _normalise_own(model_class, load_state_dict_file(path / WEIGHTS_NAME))
        if model_class.head_kind == "pretraining" and "cls_predictions.decoder.weight" not in state:
            state["cls_predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
        # A tagging or QA folder has no pooler: an encoder read from it starts its pooler fresh (with a warning).
        no_pooler = (r"^pooler\.",) if model_class.head_kind == "model" and "pooler.dense.weight" not in state else ()
        return LoadedCheckpoint(config, state, "alicemind", ignore_missing=no_pooler, ignore_unexpected=unused)
    prefix = find_tf_prefix(path)
    if prefix is None:
        raise FileNotFoundError(
            f"{path}: neither our folder (config.json + model.safetensors) nor a TF1 checkpoint (model.ckpt.index)"
        )
    folder = prefix.parent
    if config_given is not None:
        config = config_given
    elif (folder / TF_CONFIG_NAME).is_file():
        config = config_from_tf(folder / TF_CONFIG_NAME, **config_overrides)
    elif (folder / CONFIG_NAME).is_file():
        config = LatticeBertConfig.from_json_file(folder / CONFIG_NAME, **config_overrides)
    else:
        raise CheckpointError(f"{folder}: no {TF_CONFIG_NAME} beside the TF checkpoint (or pass config=)")
    tensors = load_tf_checkpoint(prefix)
    state, _ = convert_tf_variables(tensors, model_class, config, source=str(prefix))
    return LoadedCheckpoint(config, state, "latticebert-tf1")
