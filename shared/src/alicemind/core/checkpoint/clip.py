"""OpenAI CLIP checkpoints: the TorchScript archives (``ViT-B-16.tar``, ``ViT-L-14.tar``) read without running their
code, and the key maps between OpenAI's, Hugging Face's and core's :class:`~alicemind.core.layers.VisionTransformer`.

A TorchScript archive is a zip of ``<name>/data.pkl`` (the module tree, pickled), ``<name>/data/<key>`` (storage
bytes), ``<name>/code/`` (TorchScript source) and a few small files. ``torch.load`` hands such a file to
``torch.jit.load``, which compiles and runs that source; here only ``data.pkl`` is read, through core's sealed
unpickler, with the TorchScript module classes (``__torch__.*``) as inert placeholders. ``code/`` is never read.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint.errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError
from alicemind.core.checkpoint.keys import rename_keys
from alicemind.core.checkpoint.safe_pickle import placeholders_to_dicts, restricted_pickle_module

__all__ = [
    "clip_visual_to_core",
    "core_to_clip_visual",
    "core_to_hf_clip_vision",
    "hf_clip_vision_to_core",
    "is_torchscript_archive",
    "load_torchscript_state_dict",
]


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a zip holding ``<name>/data.pkl`` next to ``<name>/code/`` or ``constants.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    roots = {n.split("/", 1)[0] for n in names if n.endswith("/data.pkl") and n.count("/") == 1}
    return any(n.startswith(f"{r}/code/") or n == f"{r}/constants.pkl" for r in roots for n in names)


def _storage_loader(archive: zipfile.ZipFile, root: str, source: str):
    storages: dict[str, torch.storage.TypedStorage] = {}

    def persistent_load(pid: Any) -> torch.storage.TypedStorage:
        # The sealed unpickler has already checked the shape of pid: ('storage', StorageType, key, location, numel).
        _, storage_type, key, _, numel = pid[:5]
        if key not in storages:
            name = f"{root}/data/{key}"
            try:
                data = archive.read(name)
            except KeyError:
                raise CorruptCheckpointError(
                    f"{source}: data.pkl refers to a storage {name} the archive lacks"
                ) from None
            dtype = storage_type.dtype
            if len(data) != numel * torch._utils._element_size(dtype):
                raise CorruptCheckpointError(
                    f"{source}: storage {name} holds {len(data)} bytes, its pickle declares {numel} x {dtype}"
                )
            untyped = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8) if data else torch.UntypedStorage(0)
            storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        return storages[key]

    return persistent_load


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    # A placeholder module became {'__class__': ..., '__state__' or attributes}; tensors are its params/buffers.
    if isinstance(obj, Mapping):
        items = obj.items()
    else:
        return
    for name, value in items:
        if not isinstance(name, str) or name.startswith("__"):
            continue
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.detach()
        elif isinstance(value, Mapping):
            _flatten(value, f"{prefix}{name}.", out)


def load_torchscript_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive as a flat ``{dotted.name: tensor}``, without running any of its code.

    Module attributes that are tensors (parameters, buffers, tensor constants such as CLIP's text ``attn_mask``) are
    returned under their module path. A file that is not a TorchScript zip raises :class:`CorruptCheckpointError`;
    a ``data.pkl`` asking for any global outside core's allow-list raises :class:`UnsafeCheckpointError`.
    """
    path = Path(path)
    source = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CorruptCheckpointError(f"{source} is not a TorchScript archive (a zip): {exc}") from exc
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CorruptCheckpointError(
                f"{source} is not a TorchScript archive: expected one <name>/data.pkl, found {len(pickles)}"
            )
        root = pickles[0].split("/", 1)[0]
        module = restricted_pickle_module(path, allow_placeholders=("__torch__.*",))

        class ArchiveUnpickler(module.Unpickler):
            def find_class(self, mod: str, name: str) -> Any:
                # As torch.load does: storage classes are resolved to a StorageType (a dtype record), not imported.
                if mod == "torch" and type(name) is str and re.fullmatch(r"[A-Za-z]+Storage", name):
                    try:
                        return torch.serialization.StorageType(name)
                    except (KeyError, AttributeError):
                        pass
                return super().find_class(mod, name)

        unpickler = ArchiveUnpickler(archive.open(pickles[0]), encoding="utf-8")
        unpickler.persistent_load = _storage_loader(archive, root, source)
        try:
            obj = unpickler.load()
        except (UnsafeCheckpointError, CorruptCheckpointError):
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged pickle raises many types; nothing has run
            raise CorruptCheckpointError(f"cannot read {source}: {type(exc).__name__}: {exc}") from exc
    tree = placeholders_to_dicts(obj)
    state: dict[str, torch.Tensor] = {}
    _flatten(tree.get("__state__", tree) if isinstance(tree, Mapping) else {}, "", state)
    if not state:
        raise CheckpointError(f"{source}: the TorchScript archive holds no tensors")
    return state


# -- key maps ----------------------------------------------------------------------------------------------------

_CLIP_RULES = [
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", r"transformer.layers.\1.self_attn.qkv_proj.\2"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"transformer.layers.\1.self_attn.out_proj."),
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"transformer.layers.\1.self_attn_norm."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"transformer.layers.\1.ffn_norm."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"transformer.layers.\1.ffn.fc_in."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"transformer.layers.\1.ffn.fc_out."),
]
_CORE_RULES = [
    (r"^transformer\.layers\.(\d+)\.self_attn\.qkv_proj\.(weight|bias)$", r"transformer.resblocks.\1.attn.in_proj_\2"),
    (r"^transformer\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.resblocks.\1.attn.out_proj."),
    (r"^transformer\.layers\.(\d+)\.self_attn_norm\.", r"transformer.resblocks.\1.ln_1."),
    (r"^transformer\.layers\.(\d+)\.ffn_norm\.", r"transformer.resblocks.\1.ln_2."),
    (r"^transformer\.layers\.(\d+)\.ffn\.fc_in\.", r"transformer.resblocks.\1.mlp.c_fc."),
    (r"^transformer\.layers\.(\d+)\.ffn\.fc_out\.", r"transformer.resblocks.\1.mlp.c_proj."),
]


def clip_visual_to_core(state: Mapping[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """OpenAI CLIP ``visual.*`` keys (a whole CLIP state dict; other keys are dropped) -> core's ViT keys."""
    visual = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not visual:
        raise CheckpointError(f"no CLIP vision weights (keys starting with {prefix!r}) in the state dict")
    return rename_keys(visual, _CLIP_RULES)


def core_to_clip_visual(state: Mapping[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """Core's ViT keys -> OpenAI CLIP ``visual.*`` keys."""
    return {prefix + k: v for k, v in rename_keys(state, _CORE_RULES).items()}


_HF = "vision_model."


def hf_clip_vision_to_core(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``transformers.CLIPVisionModel`` (optionally ``CLIPModel``'s ``visual_projection``) -> core's ViT keys."""
    s = {k[len(_HF) :] if k.startswith(_HF) else k: v for k, v in state.items()}
    out = {
        "conv1.weight": s["embeddings.patch_embedding.weight"],
        "class_embedding": s["embeddings.class_embedding"],
        "positional_embedding": s["embeddings.position_embedding.weight"],
    }
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = s[f"{theirs}.{p}"]
    if "visual_projection.weight" in s:
        out["proj"] = s["visual_projection.weight"].t().contiguous()
    layer_ids = sorted({int(m.group(1)) for k in s if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    for i in layer_ids:
        a, b = f"encoder.layers.{i}.", f"transformer.layers.{i}."
        for p in ("weight", "bias"):
            qkv = [s[f"{a}self_attn.{n}_proj.{p}"] for n in ("q", "k", "v")]
            out[f"{b}self_attn.qkv_proj.{p}"] = torch.cat(qkv)
            out[f"{b}self_attn.out_proj.{p}"] = s[f"{a}self_attn.out_proj.{p}"]
            out[f"{b}self_attn_norm.{p}"] = s[f"{a}layer_norm1.{p}"]
            out[f"{b}ffn_norm.{p}"] = s[f"{a}layer_norm2.{p}"]
            out[f"{b}ffn.fc_in.{p}"] = s[f"{a}mlp.fc1.{p}"]
            out[f"{b}ffn.fc_out.{p}"] = s[f"{a}mlp.fc2.{p}"]
    return out


def core_to_hf_clip_vision(state: Mapping[str, torch.Tensor], prefix: str = _HF) -> dict[str, torch.Tensor]:
    """Core's ViT keys -> ``transformers.CLIPVisionModel`` keys (``proj`` is left out: that model has none).

    ``prefix`` ``vision_model.`` is the layout of the Hub's files and of ``CLIPModel``; transformers 5's
    ``CLIPVisionModel.state_dict()`` itself has no prefix (pass ``""``).
    """
    _HF = prefix  # noqa: N806 - the same name as the module constant, so both directions read alike
    out = {
        f"{_HF}embeddings.patch_embedding.weight": state["conv1.weight"],
        f"{_HF}embeddings.class_embedding": state["class_embedding"],
        f"{_HF}embeddings.position_embedding.weight": state["positional_embedding"],
    }
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{_HF}{theirs}.{p}"] = state[f"{ours}.{p}"]
    layer_ids = sorted({int(m.group(1)) for k in state if (m := re.match(r"transformer\.layers\.(\d+)\.", k))})
    for i in layer_ids:
        a, b = f"{_HF}encoder.layers.{i}.", f"transformer.layers.{i}."
        for p in ("weight", "bias"):
            for name, part in zip(("q", "k", "v"), state[f"{b}self_attn.qkv_proj.{p}"].chunk(3), strict=True):
                out[f"{a}self_attn.{name}_proj.{p}"] = part
            out[f"{a}self_attn.out_proj.{p}"] = state[f"{b}self_attn.out_proj.{p}"]
            out[f"{a}layer_norm1.{p}"] = state[f"{b}self_attn_norm.{p}"]
            out[f"{a}layer_norm2.{p}"] = state[f"{b}ffn_norm.{p}"]
            out[f"{a}mlp.fc1.{p}"] = state[f"{b}ffn.fc_in.{p}"]
            out[f"{a}mlp.fc2.{p}"] = state[f"{b}ffn.fc_out.{p}"]
    return out
