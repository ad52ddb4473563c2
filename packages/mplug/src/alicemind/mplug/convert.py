"""Released mPLUG files (``mplug_base.pth``, ``mplug_large.pth``, ``mplug_large_v2.pth``, fine-tuned task files)
-> our models, with every key accounted for under each task's rules; and ours -> the release layout.

Rules (models-multimodal.md §4.5, errata §7), applied to every file in this order:
1. ``model`` then ``module`` (DeepSpeed) is the state dict; the file is read by core's sealed unpickler.
2. The release's remap: ``text_encoder.bert.`` -> ``text_encoder.``, ``fusion_encoder.fusion.``/``.bert.`` ->
   ``fusion_encoder.`` (and for ``*_m``). A fine-tuned file is already remapped, so this is a no-op there: that
   is why our loader can apply it always, where the scripts skip it under ``--evaluate``.
3. CLIP ``visual_encoder.visual.*`` -> core's ViT; BERT ``encoder.layer.{i}.attention.self.query`` ... -> core's
   block names; fusion layers ``num_hidden_layers - fusion_layers ..`` -> ``0 ..``.
4. The position table is resized (bilinear, the release's loader) to the model's image size.
5. Keys the task never reads are known-unused, each for a stated reason (``UNUSED``, ``TASK_UNUSED``); any other
   key, missing or extra, is an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint import CheckpointError, load_state_dict_file, rename_keys
from alicemind.core.checkpoint.clip import clip_visual_to_core, core_to_clip_visual
from alicemind.core.config import CONFIG_NAME
from alicemind.core.layers.vision import CLIP_VISION_PRESETS, resize_position_embeddings
from alicemind.core.modeling import WEIGHTS_NAME, LoadedCheckpoint
from alicemind.mplug.config import MPlugConfig

_SUBLAYERS = [  # (ours inside encoder.layers.{i}, release inside encoder.layer.{i})
    ("self_attn.q_proj", "attention.self.query"),
    ("self_attn.k_proj", "attention.self.key"),
    ("self_attn.v_proj", "attention.self.value"),
    ("self_attn.out_proj", "attention.output.dense"),
    ("self_attn_norm", "attention.output.LayerNorm"),
    ("cross_attn.q_proj", "crossattention.self.query"),
    ("cross_attn.k_proj", "crossattention.self.key"),
    ("cross_attn.v_proj", "crossattention.self.value"),
    ("cross_attn.out_proj", "crossattention.output.dense"),
    ("cross_attn_norm", "crossattention.output.LayerNorm"),
    ("ffn.fc_in", "intermediate.dense"),
    ("ffn.fc_out", "output.dense"),
    ("ffn_norm", "output.LayerNorm"),
]
_HEAD = [("dense", "predictions.transform.dense"), ("norm", "predictions.transform.LayerNorm"),
         ("decoder", "predictions.decoder"), ("bias", "predictions.bias")]  # fmt: skip
FROM_RELEASE = (
    [
        (r"^(text_encoder|fusion_encoder)(_m)?\.(bert|fusion)\.", r"\1\2."),
        (r"\.embeddings\.LayerNorm\.", ".embeddings.norm."),
    ]
    + [(rf"\.encoder\.layer\.(\d+)\.{re.escape(r)}\.", rf".encoder.layers.\1.{o}.") for o, r in _SUBLAYERS]
    + [(rf"^(text_decoder(?:_m)?)\.cls\.{re.escape(r)}(\.|$)", rf"\1.cls.{o}\2") for o, r in _HEAD]
    + [(rf"^fusion_encoder\.cls\.{re.escape(r)}(\.|$)", rf"mlm_head.{o}\1") for o, r in _HEAD]
)
TO_RELEASE = (
    [(r"\.embeddings\.norm\.", ".embeddings.LayerNorm.")]
    + [(rf"\.encoder\.layers\.(\d+)\.{re.escape(o)}\.", rf".encoder.layer.\1.{r}.") for o, r in _SUBLAYERS]
    + [(rf"^(text_decoder(?:_m)?)\.cls\.{re.escape(o)}(\.|$)", rf"\1.cls.{r}\2") for o, r in _HEAD]
    + [(rf"^mlm_head\.{re.escape(o)}(\.|$)", rf"fusion_encoder.cls.{r}\1") for o, r in _HEAD]
)
_CLIP_TEXT = r"(positional_embedding|token_embedding\..*|transformer\..*|ln_final\..*|text_projection|logit_scale)"
# Known-unused in every task, with the reason.
UNUSED = {
    r"^visual_encoder(_m)?\.clip_text\.": "CLIP's text tower, kept whole by the release, never run",
    r"^visual_encoder(_m)?\.visual\.proj$": "CLIP's image projection: mPLUG reads ln_post tokens without it",
    r"\.position_ids$": "a buffer of 0..511, rebuilt by the embeddings",
    r"^(text_decoder(_m)?|mlm_head)\.(cls\.)?decoder\.bias$": "transformers' alias of cls.predictions.bias",
    r"^fusion_encoder(_m)?\.embeddings\.": "the fusion BertModel's embeddings: fusion reads encoder states",
    r"^fusion_encoder(_m)?\.dead_layer\.": "fusion layers 0..num_hidden_layers-fusion_layers-1: allocated, never run",
    r"^text_encoder(_m)?\.cls\.": "the text encoder's MLM wrapper head of pre-training (MLM runs through fusion)",
}
_MOMENTUM = r"^[a-z_]+_m\."
_CONTRASTIVE = r"^(vision_proj|text_proj|itm_head|temp|image_queue|text_queue|idx_queue|queue_ptr)(\.|$)"
TASK_UNUSED = {  # what each task's model has no place for, and why
    "caption": {
        r"^(text_encoder|fusion_encoder)\.": "captioning decodes from the image alone",
        _MOMENTUM: "the caption model has no momentum copies (errata §7)",
        _CONTRASTIVE: "retrieval/pre-training heads",
        r"^mlm_head\.": "the pre-training MLM head",
    },
    "vqa": {
        _CONTRASTIVE: "retrieval/pre-training heads",
        r"^mlm_head\.": "the pre-training MLM head",
        r"^(vision_proj|text_proj)_m\.": "retrieval momentum projections",
    },  # fmt: skip
    "grounding": {
        _MOMENTUM: "the grounding loader drops every _m key (grounding_mplug.py)",
        _CONTRASTIVE: "retrieval/pre-training heads",
        r"^mlm_head\.": "the pre-training MLM head",
        r"^(prefix_ids|target_ids|bbox_prob_mask)$": "buffers rebuilt from the tokenizer",
    },
    "retrieval": {
        r"^text_decoder(_m)?\.": "retrieval has no decoder",
        r"^(fusion_encoder|text_decoder)_m\.": "retrieval keeps momentum copies of the encoders only",
        r"^mlm_head\.": "the pre-training MLM head",
    },
    "pretrain": {r"^(fusion_encoder|text_decoder)_m\.": "pre-training keeps momentum copies of the encoders only"},
}


def _fusion_indices(state: dict[str, torch.Tensor], config: MPlugConfig) -> dict[str, torch.Tensor]:
    first = config.num_hidden_layers - config.fusion_layers
    out = {}
    for key, value in state.items():
        m = re.match(r"^(fusion_encoder(?:_m)?)\.encoder\.layers\.(\d+)\.(.*)$", key)
        if m is None:
            out[key] = value
        elif int(m.group(2)) >= first:
            out[f"{m.group(1)}.layers.{int(m.group(2)) - first}.{m.group(3)}"] = value
        else:
            out[f"{m.group(1)}.dead_layer.{m.group(2)}.{m.group(3)}"] = value
    return out


def _clip_parts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # CLIP's text tower sits beside .visual (visual_encoder.positional_embedding is its table): move it aside
    # before the vision keys take those names.
    text_tower = re.compile(rf"^(visual_encoder(?:_m)?)\.{_CLIP_TEXT}$")
    out = {}
    for key, value in state.items():
        if not re.match(r"^visual_encoder(_m)?\.visual\.", key):
            out[text_tower.sub(r"\1.clip_text.\2", key)] = value
    for tower in ("visual_encoder", "visual_encoder_m"):
        prefix = f"{tower}.visual."
        visual = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        proj = visual.pop("proj", None)
        if visual:
            out.update({f"{tower}.{k}": v for k, v in clip_visual_to_core(visual, prefix="").items()})
        if proj is not None:
            out[f"{prefix}proj"] = proj
    return out


def release_to_ours(state: dict[str, torch.Tensor], config: MPlugConfig) -> dict[str, torch.Tensor]:
    """Apply rules 2-4 to a released state dict."""
    state = _fusion_indices(rename_keys(_clip_parts(state), FROM_RELEASE), config)
    _resize_positions(state, config)
    return state


def _resize_positions(state: dict[str, torch.Tensor], config: MPlugConfig) -> None:
    for key in [k for k in state if re.match(r"^visual_encoder(_m)?\.positional_embedding$", k)]:
        state[key] = resize_position_embeddings(state[key], config.vision_config().grid, mode="bilinear")


def ours_to_release(state: dict[str, torch.Tensor], config: MPlugConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> the release layout (encoders MLM-wrapped as in a pre-trained file; no dead layers)."""
    first = config.num_hidden_layers - config.fusion_layers
    shifted = {}
    for key, value in state.items():
        m = re.match(r"^(fusion_encoder(?:_m)?)\.layers\.(\d+)\.(.*)$", key)
        shifted[f"{m.group(1)}.encoder.layers.{int(m.group(2)) + first}.{m.group(3)}" if m else key] = value
    out: dict[str, torch.Tensor] = {}
    for key, value in rename_keys(shifted, TO_RELEASE).items():
        key = re.sub(r"^(fusion_encoder(?:_m)?)\.", r"\1.fusion.", key)
        key = re.sub(r"^(text_encoder(?:_m)?)\.(?!cls\.)", r"\1.bert.", key)
        out[key] = value
    for tower in ("visual_encoder", "visual_encoder_m"):
        mine = {k[len(tower) + 1 :]: out.pop(k) for k in list(out) if k.startswith(tower + ".")}
        if mine:
            out.update({f"{tower}.{k}": v for k, v in core_to_clip_visual(mine).items()})
    return out


def config_from_release(state: dict[str, torch.Tensor], **overrides: Any) -> MPlugConfig:
    """Our config from a released state dict's shapes (stride: 3 for a ViT-B/16 base, 6 for ViT-L/14 large).

    Head counts are not in the weights: 64-wide heads are assumed (true of every release); pass
    ``num_attention_heads`` / ``vision_overrides`` for other shapes. The fusion layers run are the last 6 (of
    12), as every release config says; the dead ones look alike, so pass ``fusion_layers`` for other files.
    """
    conv = state.get("visual_encoder.visual.conv1.weight")
    if conv is None:
        raise CheckpointError("not an mPLUG file: no visual_encoder.visual.conv1.weight")
    width, patch = conv.shape[0], conv.shape[-1]
    preset = next((n for n, p in CLIP_VISION_PRESETS.items() if (p["width"], p["patch_size"]) == (width, patch)), None)

    def count(pattern: str) -> int:
        return len({m.group(1) for k in state if (m := re.match(pattern, k))})

    layers = count(r"^visual_encoder\.visual\.transformer\.resblocks\.(\d+)\.")
    vision = {"patch_size": patch, "width": width, "layers": layers, "heads": max(width // 64, 1), "output_dim": 0}
    grid = round((state["visual_encoder.visual.positional_embedding"].shape[0] - 1) ** 0.5)
    words = state["text_decoder.bert.embeddings.word_embeddings.weight"]
    fusion = count(r"^fusion_encoder\.(?:fusion|bert)\.encoder\.layer\.(\d+)\.")
    values: dict[str, Any] = dict(
        vision_preset=preset or "ViT-B/16",
        vision_overrides=None if preset else vision,
        image_size=grid * patch,  # the file's own resolution; pass image_size to resize the table
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        max_position_embeddings=state["text_decoder.bert.embeddings.position_embeddings.weight"].shape[0],
        intermediate_size=state["text_decoder.bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        num_attention_heads=max(words.shape[1] // 64, 1),
        text_encoder_layers=count(r"^text_encoder\.(?:bert\.)?encoder\.layer\.(\d+)\."),
        num_hidden_layers=fusion or 12,  # a caption file has no fusion encoder: keep the release's 12/6
        fusion_layers=min(6, fusion or 12),
        text_decode_layers=count(r"^text_decoder\.bert\.encoder\.layer\.(\d+)\."),
        stride_layer=3 if width == 768 else 6,
    )
    if "image_queue" in state:
        values["embed_dim"], values["queue_size"] = state["image_queue"].shape
    values.update(overrides)
    return MPlugConfig(**values)


def _fill_momentum_copies(cls, config: MPlugConfig, state: dict[str, torch.Tensor]) -> None:
    """A momentum copy the file lacks starts equal to its online module (ALBEF's ``copy_params``): pre-trained
    files need not hold ``fusion_encoder_m``/``text_decoder_m``, which the release never updates (4.9)."""
    if not (cls.momentum_parts and config.distill):
        return
    names = [n for n in cls.momentum_parts if any(k.startswith(n + ".") for k in state)]
    if "visual_encoder" in names and any(k.startswith("visn_fc.") for k in state):
        names += ["visn_fc", "visn_layer_norm"]
    for name in names:
        if not any(k.startswith(f"{name}_m.") for k in state):
            state.update({f"{name}_m.{k[len(name) + 1 :]}": v.clone() for k, v in list(state.items())
                          if k.startswith(name + ".")})  # fmt: skip


def read_mplug_checkpoint(cls, path: Path, **overrides: Any) -> LoadedCheckpoint:
    """Our folder (config.json + model.safetensors) or a released ``.pth`` under ``cls.release_task``'s rules."""
    path = Path(path)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{path} has no {CONFIG_NAME} + {WEIGHTS_NAME}")
        config = MPlugConfig.from_json_file(path / CONFIG_NAME, **overrides)
        state = load_state_dict_file(path / WEIGHTS_NAME)
        _resize_positions(state, config)  # an image_size override resizes the table, as for a release
        return LoadedCheckpoint(config, state, "alicemind")
    raw = load_state_dict_file(path)  # tries model, then module, as every release loader does
    config = config_from_release(raw, **overrides)
    state = release_to_ours(raw, config)
    _fill_momentum_copies(cls, config, state)
    unused = list(UNUSED) + list(TASK_UNUSED[cls.release_task])
    ignore_missing = (r"^text_decoder\.cls\.decoder\.weight$", r"^mlm_head\.decoder\.weight$")  # tied
    return LoadedCheckpoint(config, state, f"mplug-release-{cls.release_task}", ignore_missing, tuple(unused))
