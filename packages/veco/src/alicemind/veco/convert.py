"""Every released VECO layout -> our models; ours -> Hugging Face XLM-R (NLU) and BART (NLG) key names.

NLU layouts (``read_nlu_checkpoint``; ``model.source_format`` says which was found):
  * ``alicemind``: our folder (config.json + model.safetensors written by ``save_pretrained``);
  * ``xtreme-released-veco``: the released ``xtreme-released-veco/`` folder: XLM-R ``config.json``,
    ``pytorch_model.bin`` with ``roberta.*`` keys (a Hugging Face XLM-R folder saved as ``.bin`` looks the same);
  * ``sofa``: a sofa veco folder (``model_type: veco``, Hugging Face RoBERTa keys);
  * ``huggingface-xlmr``: a Hugging Face XLM-R folder with ``model.safetensors``.
NLG layouts (``read_nlg_checkpoint``):
  * ``alicemind``: our folder;
  * ``fairseq-veco``: the released ``veco-large/`` folder: ``model.pt`` (fairseq checkpoint; its argparse
    ``Namespace`` and ``version`` buffers are read by core's restricted unpickler, nothing is executed),
    ``dict.txt``, ``sentencepiece.bpe.model``. The original's ``upgrade_state_dict_named`` rules are applied:
    ``keep_decoder_layers`` (default the top 6 of the file's layers) renumbered to 0..n-1, the ``<mask>`` row
    dropped when the dictionary has no ``<mask>``, and ``resized_dict_map`` (0/1 per line of the pre-training
    ``dict.txt``) keeping the rows of a resized language-pair dictionary.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint import (
    CheckpointError,
    load_fairseq_checkpoint,
    load_state_dict_file,
    read_fairseq_dictionary,
    read_safetensors_metadata,
    rename_keys,
)
from alicemind.core.modeling import WEIGHTS_NAME, LoadedCheckpoint
from alicemind.veco.config import VecoConfig

logger = logging.getLogger(__name__)

# -- NLU: our module names <-> Hugging Face XLM-R names --------------------------------------------------------
_SUBLAYERS = [  # (ours, Hugging Face) inside encoder.layers.{i} / encoder.layer.{i}
    ("self_attn.q_proj", "attention.self.query"),
    ("self_attn.k_proj", "attention.self.key"),
    ("self_attn.v_proj", "attention.self.value"),
    ("self_attn.out_proj", "attention.output.dense"),
    ("self_attn_norm", "attention.output.LayerNorm"),
    # VECO's plug-in cross-attention, under BERT-decoder names (the issue #14 mapping's internal names).
    ("cross_attn.q_proj", "crossattention.self.query"),
    ("cross_attn.k_proj", "crossattention.self.key"),
    ("cross_attn.v_proj", "crossattention.self.value"),
    ("cross_attn.out_proj", "crossattention.output.dense"),
    ("cross_attn_norm", "crossattention.output.LayerNorm"),
    ("ffn.fc_in", "intermediate.dense"),
    ("ffn.fc_out", "output.dense"),
    ("ffn_norm", "output.LayerNorm"),
]
_LAYER_OURS, _LAYER_HF = r"encoder\.layers\.(\d+)\.", r"encoder\.layer\.(\d+)\."
BACKBONE_TO_HF = [(r"(^|\.)embeddings\.norm\.", r"\1embeddings.LayerNorm.")] + [
    (rf"(^|\.){_LAYER_OURS}{re.escape(ours)}\.", rf"\1encoder.layer.\2.{hf}.") for ours, hf in _SUBLAYERS
]
BACKBONE_FROM_HF = [(r"(^|\.)embeddings\.LayerNorm\.", r"\1embeddings.norm.")] + [
    (rf"(^|\.){_LAYER_HF}{re.escape(hf)}\.", rf"\1encoder.layers.\2.{ours}.") for ours, hf in _SUBLAYERS
]
HEADS_TO_HF = [(r"^lm_head\.norm\.", "lm_head.layer_norm.")]
HEADS_FROM_HF = [(r"^lm_head\.layer_norm\.", "lm_head.norm.")]
HEAD_KEYS = r"^(lm_head|classifier|qa_outputs)\."
KNOWN_UNUSED = [r"(^|\.)position_ids$", r"(^|\.)token_type_ids$", r"^lm_head\.decoder\.bias$"]
OWN_HEADS = {"VecoModel": r"$^", "VecoForQuestionAnswering": r"^qa_outputs\.", "VecoForPreTraining": r"^lm_head\."}
NLU_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def to_hf_keys(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Our NLU state dict -> Hugging Face XLM-R names (``prefix`` is ``"roberta."`` for head models)."""
    return rename_keys(state, BACKBONE_TO_HF + HEADS_TO_HF)


def from_hf_keys(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Hugging Face XLM-R names (already under ``prefix``) -> our module names."""
    return rename_keys(state, BACKBONE_FROM_HF + HEADS_FROM_HF)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _nlu_weights(path: Path) -> Path:
    if path.is_file():
        return path
    for name in NLU_WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    if (path / "model.pt").is_file():
        raise CheckpointError(
            f"{path} is a fairseq (VECO NLG) folder: load it with VecoForConditionalGeneration.from_pretrained"
        )
    raise FileNotFoundError(f"{path} holds none of {NLU_WEIGHT_FILES}")


def detect_nlu_format(folder: Path, weights: Path) -> str:
    """Name the layout of an NLU checkpoint folder."""
    cfg = _read_json(folder / "config.json")
    if weights.suffix == ".safetensors":
        if read_safetensors_metadata(weights).get("model_class", "").startswith("Veco"):
            return "alicemind"
        return "huggingface-xlmr"
    if cfg.get("model_type") == "veco":
        return "sofa"
    return "xtreme-released-veco"


def read_nlu_checkpoint(cls, path: Path, **overrides: Any) -> LoadedCheckpoint:
    """Read any VECO NLU layout for model class ``cls`` (see the module docstring)."""
    weights = _nlu_weights(path)
    folder = path if path.is_dir() else path.parent
    fmt = detect_nlu_format(folder, weights)
    cfg_data = _read_json(folder / "config.json")
    if cfg_data.get("is_encoder_decoder"):
        raise CheckpointError(f"{folder} holds VECO NLG (encoder-decoder): load it with VecoForConditionalGeneration")
    if not cfg_data:
        raise FileNotFoundError(f"{folder} has no config.json beside {weights.name}")
    state = load_state_dict_file(weights)
    prefix = cls.file_prefix()
    # Put the encoder under the prefix this class expects, whichever the file used.
    has_prefix = any(k.startswith("roberta.") for k in state)
    if prefix and not has_prefix:
        state = {(k if re.match(HEAD_KEYS, k) else prefix + k): v for k, v in state.items()}
    elif not prefix and has_prefix:
        state = {(k[len("roberta.") :] if k.startswith("roberta.") else k): v for k, v in state.items()}
    heads = OWN_HEADS.get(cls.__name__, r"^classifier\.")
    head_sizes = {k: v.shape[0] for k, v in state.items() if re.match(r"^classifier\.(out_proj\.)?weight$", k)}
    if (
        cls.__name__ in ("VecoForSequenceClassification", "VecoForTokenClassification")
        and "num_labels" not in overrides
    ):
        size = head_sizes.get("classifier.out_proj.weight", head_sizes.get("classifier.weight"))
        if size is not None:
            overrides["num_labels"] = int(size)
    config = VecoConfig.from_dict(cfg_data, **overrides)
    foreign = [k for k in state if re.match(HEAD_KEYS, k) and not re.match(heads, k)]
    # The pre-training model's plug-in cross-attention is unplugged for NLU: its weights are not used here.
    foreign += [k for k in state if ".crossattention." in k and cls.__name__ != "VecoForPreTraining"]
    if cls.__name__ in ("VecoForSequenceClassification", "VecoForTokenClassification", "VecoForQuestionAnswering"):
        foreign += [k for k in state if k.startswith(prefix + "pooler.")]
    if foreign:
        logger.warning("%s does not use these weights of %s, dropping them: %s", cls.__name__, path, sorted(foreign))
        state = {k: v for k, v in state.items() if k not in foreign}
    if cls.__name__ == "VecoForPreTraining" and "lm_head.decoder.weight" not in state:
        word = state.get(prefix + "embeddings.word_embeddings.weight")
        if word is not None and "lm_head.dense.weight" in state:
            state["lm_head.decoder.weight"] = word  # tied; Hugging Face folders store it once
    return LoadedCheckpoint(config, from_hf_keys(state, prefix), fmt, ignore_unexpected=tuple(KNOWN_UNUSED))


# -- NLG: fairseq veco_large <-> ours <-> Hugging Face BART -----------------------------------------------------
_FAIRSEQ_SUBLAYERS = [  # (fairseq, ours) inside {encoder,decoder}.layers.{i}
    ("self_attn_layer_norm", "self_attn_norm"),
    ("encoder_attn_layer_norm", "cross_attn_norm"),
    ("encoder_attn", "cross_attn"),
    ("fc1", "ffn.fc_in"),
    ("fc2", "ffn.fc_out"),
    ("final_layer_norm", "ffn_norm"),
]
FAIRSEQ_TO_OURS = [
    (r"^(encoder|decoder)\.embed_positions\.", r"\1_embeddings.position_embeddings."),
    (r"^(encoder|decoder)\.layernorm_embedding\.", r"\1_embeddings.norm."),
    (r"^(encoder|decoder)\.embed_tokens\.", r"\1_embeddings.word_embeddings."),
] + [(rf"^(encoder|decoder)\.layers\.(\d+)\.{a}\.", rf"\1.layers.\2.{b}.") for a, b in _FAIRSEQ_SUBLAYERS]
# Keys of the fairseq file with no place in the model: bookkeeping buffers and the tied output projections.
FAIRSEQ_UNUSED = (r"(^|\.)version$", r"(^|\.)_float_tensor$", r"^(encoder|decoder)\.output_projection\.weight$")
EMBEDDING_KEYS = (
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
    "encoder.output_projection.weight",
    "decoder.output_projection.weight",
)
DEFAULT_KEPT_DECODER_LAYERS = 6  # the fine-tune scripts keep 18..23 of 24


def _layer_indices(state: dict[str, torch.Tensor], side: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(rf"^{side}\.layers\.(\d+)\.", k))})


def keep_layers(state: dict[str, torch.Tensor], side: str, keep: Sequence[int]) -> dict[str, torch.Tensor]:
    """Keep the ``side`` layers listed in ``keep`` (in that order), renumbered 0..n-1; one clear error for an
    index past the file's layers or a repeated one."""
    present = _layer_indices(state, side)
    keep = [int(i) for i in keep]
    bad = [i for i in keep if i not in present]
    if bad:
        raise CheckpointError(
            f"keep_{side}_layers index {bad[0]} is past the file's {len(present)} {side} layers "
            f"(0..{max(present) if present else -1})"
        )
    if len(set(keep)) != len(keep):
        raise CheckpointError(f"keep_{side}_layers lists a layer twice: {keep}")
    new_index = {old: new for new, old in enumerate(keep)}
    out = {}
    for key, value in state.items():
        m = re.match(rf"^{side}\.layers\.(\d+)\.(.*)$", key)
        if m is None:
            out[key] = value
        elif int(m.group(1)) in new_index:
            out[f"{side}.layers.{new_index[int(m.group(1))]}.{m.group(2)}"] = value
    return out


def _parse_layers(value: Any) -> list[int] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise CheckpointError(f"keep_decoder_layers must be comma-separated integers, got {value!r}") from None
    return [int(v) for v in value]


def read_resized_dict_map(path: str | Path) -> list[bool]:
    """A ``--resized-dict-map`` file: one 0/1 per line of the pre-training ``dict.txt``."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    bad = [i for i, line in enumerate(lines, 1) if line not in ("0", "1")]
    if bad:
        raise CheckpointError(f"{path}:{bad[0]}: a resized-dict map holds one 0 or 1 per line")
    return [line == "1" for line in lines]


def fit_embeddings(
    state: dict[str, torch.Tensor], symbols: list[str], *, resized_dict_map: str | Path | None = None, source=""
) -> dict[str, torch.Tensor]:
    """The original's embedding-row rules: drop the trailing ``<mask>`` row when the dictionary lacks ``<mask>``,
    or select rows with ``resized_dict_map``; any other size difference is a one-line error naming both sizes."""
    rows = state["encoder.embed_tokens.weight"].shape[0]
    has_mask = "<mask>" in symbols
    keep: list[bool] | None = None
    if resized_dict_map is not None:
        flags = read_resized_dict_map(resized_dict_map)
        keep = [True] * 4 + flags + [has_mask]
        if len(keep) != rows:
            raise CheckpointError(
                f"resized_dict_map {resized_dict_map} has {len(flags)} lines; the embedding of {source} has {rows} "
                f"rows, so it needs {rows - 5} (4 specials and <mask> are added)"
            )
        if sum(keep) != len(symbols):
            raise CheckpointError(
                f"resized_dict_map keeps {sum(keep)} rows but the dictionary has {len(symbols)} symbols"
            )
    elif rows == len(symbols) + 1 and not has_mask:
        keep = [True] * (rows - 1) + [False]
    elif rows != len(symbols):
        raise CheckpointError(
            f"the dictionary has {len(symbols)} symbols but the embedding of {source} has {rows} rows: it is not "
            "this checkpoint's dict.txt (a resized language-pair dictionary needs resized_dict_map=)"
        )
    if keep is None:
        return state
    index = torch.tensor([i for i, k in enumerate(keep) if k])
    return {k: (v.index_select(0, index) if k in EMBEDDING_KEYS else v) for k, v in state.items()}


def find_fairseq_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".pt":
        return path
    if path.is_dir():
        for name in ("model.pt", "checkpoint_best.pt", "checkpoint_last.pt"):
            if (path / name).is_file():
                return path / name
        found = sorted(path.glob("*.pt"))
        if len(found) == 1:
            return found[0]
    return None


def nlg_config_from_args(args: dict[str, Any], state: dict[str, torch.Tensor], decoder_layers: int, **overrides):
    """``VecoConfig`` of a fairseq ``veco_large`` checkpoint from its args and tensor shapes."""
    if args.get("encoder_normalize_before") or args.get("decoder_normalize_before"):
        raise CheckpointError("this fairseq checkpoint is pre-LN (normalize_before): VECO is post-LN")
    if args.get("layernorm_embedding") is False or "encoder.layernorm_embedding.weight" not in state:
        raise CheckpointError("this fairseq checkpoint has no layernorm_embedding: it is not VECO's veco_large")
    rows, hidden = state["encoder.embed_tokens.weight"].shape
    heads = int(args.get("encoder_attention_heads") or max(1, hidden // 64))
    values = dict(
        vocab_size=rows,
        hidden_size=hidden,
        num_hidden_layers=len(_layer_indices(state, "encoder")),
        num_attention_heads=heads,
        intermediate_size=state["encoder.layers.0.fc1.weight"].shape[0],
        hidden_act=str(args.get("activation_fn") or "gelu"),
        hidden_dropout_prob=float(args.get("dropout", 0.1)),
        attention_probs_dropout_prob=float(args.get("attention_dropout", 0.0)),
        activation_dropout=float(args.get("activation_dropout", args.get("relu_dropout", 0.0)) or 0.0),
        max_position_embeddings=state["encoder.embed_positions.weight"].shape[0],
        layer_norm_eps=1e-5,
        is_encoder_decoder=True,
        decoder_layers=decoder_layers,
        scale_embedding=not args.get("no_scale_embedding", False),
    )
    return VecoConfig.from_dict(values, **overrides)


def read_fairseq_nlg(
    path: Path,
    *,
    keep_decoder_layers: Sequence[int] | str | None = None,
    resized_dict_map: str | Path | None = None,
    dictionary: str | Path | None = None,
    **overrides: Any,
) -> tuple[LoadedCheckpoint, list[str]]:
    """The released fairseq folder -> (our checkpoint, the dictionary's symbols)."""
    file = find_fairseq_file(path)
    if file is None:
        raise FileNotFoundError(f"{path} holds no fairseq model.pt")
    dict_path = Path(dictionary) if dictionary is not None else file.parent / "dict.txt"
    if not dict_path.is_file():
        raise FileNotFoundError(f"no dictionary {dict_path}: the fairseq folder needs its dict.txt")
    state, args = load_fairseq_checkpoint(file)
    state = {k: v for k, v in state.items() if not re.search(FAIRSEQ_UNUSED[0], k) and "_float_tensor" not in k}
    present = _layer_indices(state, "decoder")
    keep = _parse_layers(keep_decoder_layers if keep_decoder_layers is not None else args.get("keep_decoder_layers"))
    if keep is None:
        keep = present[-DEFAULT_KEPT_DECODER_LAYERS:]
    state = keep_layers(state, "decoder", keep)
    encoder_keep = _parse_layers(args.get("keep_encoder_layers"))
    if encoder_keep is not None:
        state = keep_layers(state, "encoder", encoder_keep)
    symbols = read_fairseq_dictionary(dict_path)
    state = fit_embeddings(state, symbols, resized_dict_map=resized_dict_map, source=str(file))
    word = state["encoder.embed_tokens.weight"]
    for key in EMBEDDING_KEYS[1:]:
        if key in state and not torch.equal(state[key], word):
            raise CheckpointError(f"{file}: {key} differs from encoder.embed_tokens.weight; VECO shares all embeddings")
    config = nlg_config_from_args(args, state, len(keep), **overrides)
    ours = rename_keys({k: v for k, v in state.items() if k not in EMBEDDING_KEYS[1:]}, FAIRSEQ_TO_OURS)
    ours["decoder_embeddings.word_embeddings.weight"] = ours["encoder_embeddings.word_embeddings.weight"]
    return LoadedCheckpoint(config, ours, "fairseq-veco"), symbols


def read_nlg_checkpoint(path: Path, **overrides: Any) -> LoadedCheckpoint:
    """Our NLG folder, or the released fairseq folder (see :func:`read_fairseq_nlg`)."""
    fairseq_options = {
        k: overrides.pop(k) for k in ("keep_decoder_layers", "resized_dict_map", "dictionary") if k in overrides
    }
    if find_fairseq_file(path) is not None and not (path / WEIGHTS_NAME).is_file():
        return read_fairseq_nlg(path, **fairseq_options, **overrides)[0]
    if fairseq_options:
        raise CheckpointError(f"{sorted(fairseq_options)} apply to the fairseq layout only; {path} is not one")
    if not (path / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{path} holds neither {WEIGHTS_NAME} nor a fairseq model.pt")
    config = VecoConfig.from_json_file(path / "config.json", **overrides)
    if not config.is_encoder_decoder:
        raise CheckpointError(f"{path} holds a VECO NLU encoder: load it with VecoModel (or a head class)")
    return LoadedCheckpoint(config, load_state_dict_file(path / WEIGHTS_NAME), "alicemind")


# -- ours -> Hugging Face BART (the peer computation of VECO NLG) ------------------------------------------------
_OURS_TO_BART_SUB = [
    ("self_attn_norm", "self_attn_layer_norm"),
    ("cross_attn_norm", "encoder_attn_layer_norm"),
    ("cross_attn", "encoder_attn"),
    ("ffn.fc_in", "fc1"),
    ("ffn.fc_out", "fc2"),
    ("ffn_norm", "final_layer_norm"),
]
OURS_TO_BART = [
    (r"^(encoder|decoder)_embeddings\.position_embeddings\.", r"model.\1.embed_positions."),
    (r"^(encoder|decoder)_embeddings\.norm\.", r"model.\1.layernorm_embedding."),
    (r"^(encoder|decoder)_embeddings\.word_embeddings\.", r"model.\1.embed_tokens."),
] + [
    (rf"^(encoder|decoder)\.layers\.(\d+)\.{re.escape(a)}\.", rf"model.\1.layers.\2.{b}.") for a, b in _OURS_TO_BART_SUB
]
OURS_TO_BART += [(r"^(encoder|decoder)\.layers\.", r"model.\1.layers.")]


def bart_config_dict(config: VecoConfig) -> dict[str, Any]:
    """``BartConfig`` keyword arguments computing what VECO NLG computes."""
    c = config
    return dict(
        vocab_size=c.vocab_size, d_model=c.hidden_size, encoder_layers=c.num_hidden_layers,
        decoder_layers=c.decoder_layers, encoder_attention_heads=c.num_attention_heads,
        decoder_attention_heads=c.num_attention_heads, encoder_ffn_dim=c.intermediate_size,
        decoder_ffn_dim=c.intermediate_size, activation_function=c.hidden_act,
        max_position_embeddings=c.max_position_embeddings - 2, scale_embedding=c.scale_embedding,
        pad_token_id=c.pad_token_id, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        dropout=c.hidden_dropout_prob, attention_dropout=c.attention_probs_dropout_prob,
        activation_dropout=c.activation_dropout, tie_word_embeddings=True, forced_eos_token_id=None,
    )  # fmt: skip


def to_bart_state_dict(model) -> dict[str, torch.Tensor]:
    """Our NLG weights under ``transformers.BartForConditionalGeneration`` names (shared table, zero logits bias)."""
    if model.config.position_offset != 2:
        raise ValueError("BART's learned positions are offset by 2: pad_token_id must be 1")
    state = rename_keys(model.state_dict(), OURS_TO_BART)
    word = state["model.encoder.embed_tokens.weight"]
    state["model.shared.weight"] = word
    state["lm_head.weight"] = word
    state["final_logits_bias"] = torch.zeros(1, word.shape[0])
    return state
