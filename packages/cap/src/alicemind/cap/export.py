"""export_pruned / load_pruned: a structurally pruned model made physically smaller, or masked weights saved.

Structured: pruned heads' Q/K/V rows and attention-output columns, and pruned neurons' FFN-in rows and FFN-out
columns are removed. The folder holds the model's ``config.json``, a ``cap_pruning.json`` with the kept heads and
neurons per layer, and ``model.safetensors``. For models on alicemind-core's blocks the config gains
``layer_sizes`` (per-block head count and FFN width, :mod:`alicemind.core.layers.layer_sizes`), which core's
``from_pretrained`` honours: the family's own class loads the smaller model strictly. A Hugging Face config has one
``intermediate_size`` and a head width tied to ``num_attention_heads`` (transformers 5 dropped ``pruned_heads``),
so there :func:`load_pruned` rebuilds the class, shrinks it to the recorded shapes and loads strictly. Unstructured: the masks are baked into the weights
(original names, loadable by the class's own ``from_pretrained``) and ``sparsity_report.json`` lists every matrix.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.cap.adapters import CoreBlockAdapter, EncoderAdapter, LayerHandles, find_adapter
from alicemind.cap.movement import MovementPruner
from alicemind.cap.structured import StructuredPruner
from alicemind.core.checkpoint import load_safetensors, save_safetensors
from alicemind.core.io import atomic_folder, atomic_write_text
from alicemind.core.layers.layer_sizes import LAYER_SIZES_KEY, apply_layer_sizes, layer_sizes_of

STRUCTURE_FILE = "cap_pruning.json"
REPORT_FILE = "sparsity_report.json"
WEIGHTS_FILE = "model.safetensors"


def _slice_linear(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping output rows (dim 0) or input columns (dim 1) ``keep``."""
    weight = linear.weight.detach().index_select(dim, keep.to(linear.weight.device))
    out_f, in_f = weight.shape
    new = nn.Linear(in_f, out_f, bias=linear.bias is not None).to(weight.device, weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach()[keep.to(weight.device)])
    return new


def _set_child(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for module in root.modules():
        for name, child in module.named_children():
            if child is old:
                setattr(module, name, new)


def shrink_layer(
    root: nn.Module, adapter: EncoderAdapter, handles: LayerHandles, heads: list[int], neurons: list[int]
) -> None:
    """Physically keep only ``heads`` and FFN ``neurons`` (index lists, in order) of one layer."""
    hd = handles.head_dim
    head_rows = torch.tensor([h * hd + d for h in heads for d in range(hd)], dtype=torch.long)
    if handles.fused_qkv is not None:
        third = handles.fused_qkv.out_features // 3
        rows = torch.cat([head_rows + i * third for i in range(3)])
        _set_child(root, handles.fused_qkv, _slice_linear(handles.fused_qkv, rows, 0))
    else:
        for linear in (handles.query, handles.key, handles.value):
            _set_child(root, linear, _slice_linear(linear, head_rows, 0))
    _set_child(root, handles.attn_out, _slice_linear(handles.attn_out, head_rows, 1))
    keep = torch.tensor(neurons, dtype=torch.long)
    _set_child(root, handles.ffn_in, _slice_linear(handles.ffn_in, keep, 0))
    _set_child(root, handles.ffn_out, _slice_linear(handles.ffn_out, keep, 1))
    adapter.set_num_heads(handles, len(heads))


def structure_of(pruner: StructuredPruner) -> dict[str, Any]:
    """Kept head and neuron indices per layer, from the pruner's masks."""
    return {
        "kept_heads": [m.nonzero().flatten().tolist() for m in pruner.head_mask.cpu()],
        "kept_neurons": [m.nonzero().flatten().tolist() for m in pruner.neuron_mask.cpu()],
        "original_heads": pruner.head_mask.shape[1],
        "original_intermediate_size": pruner.neuron_mask.shape[1],
    }


def apply_structure(model: nn.Module, structure: dict[str, Any], adapter: EncoderAdapter | None = None) -> nn.Module:
    """Shrink ``model`` in place to ``structure`` (as written by :func:`structure_of`)."""
    adapter = find_adapter(model, adapter)
    layers = adapter.layers(model)
    if len(layers) != len(structure["kept_heads"]):
        raise ValueError(f"the pruning record has {len(structure['kept_heads'])} layers, the model {len(layers)}")
    for handles, heads, neurons in zip(layers, structure["kept_heads"], structure["kept_neurons"]):
        shrink_layer(model, adapter, handles, heads, neurons)
    return model


def pruned_copy(model: nn.Module, pruner: StructuredPruner) -> nn.Module:
    """A physically smaller deep copy of ``model``, without the pruner's gating hooks."""
    small = copy.deepcopy(model)
    hook_ids = {h.id for h in pruner._hooks}
    for module in small.modules():
        for hook_id in hook_ids & set(module._forward_pre_hooks):
            del module._forward_pre_hooks[hook_id]
    return apply_structure(small, structure_of(pruner), pruner.adapter)


def count_parameters(model: nn.Module) -> int:
    """Parameters, shared tensors counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _save_config(model: nn.Module, folder: Path) -> None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "save_pretrained"):
        raise ValueError(f"{type(model).__name__} has no config with save_pretrained(): export needs one")
    config.save_pretrained(folder)


def export_pruned(
    model: nn.Module, pruner: StructuredPruner | MovementPruner, folder: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write the pruned model to ``folder`` and return its report.

    StructuredPruner: a physically smaller copy (``model`` itself stays masked and usable). MovementPruner: the
    masks are baked into ``model``'s weights (its MaskedLinear layers become plain Linear again).
    """
    folder = Path(folder)
    if isinstance(pruner, StructuredPruner):
        small = pruned_copy(model, pruner)
        structure = structure_of(pruner)
        extra = getattr(getattr(small, "config", None), "extra", None)
        if isinstance(extra, dict) and isinstance(pruner.adapter, CoreBlockAdapter):
            extra[LAYER_SIZES_KEY] = layer_sizes_of(small)  # the copy's config: the student's is untouched
        report = {
            "kind": "structured",
            "parameters": count_parameters(small),
            "parameters_before": count_parameters(model),
            "heads_per_layer": [len(h) for h in structure["kept_heads"]],
            "intermediate_per_layer": [len(n) for n in structure["kept_neurons"]],
            **structure,
        }
        target = small
    elif isinstance(pruner, MovementPruner):
        report = {"kind": "unstructured", **pruner.restore(), "parameters": count_parameters(model)}
        target = model
    else:
        raise TypeError(f"export_pruned needs a StructuredPruner or MovementPruner, got {type(pruner).__name__}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in target.state_dict().items()}
    with atomic_folder(folder, overwrite=overwrite) as staging:
        _save_config(target, staging)
        save_safetensors(tensors, staging / WEIGHTS_FILE, metadata={"format": "pt", "cap": report["kind"]})
        name = STRUCTURE_FILE if report["kind"] == "structured" else REPORT_FILE
        atomic_write_text(staging / name, json.dumps(report, indent=1))
    return report


def _config_of(model_cls: type, folder: Path):
    config_class = getattr(model_cls, "config_class", None)
    if config_class is None:
        raise ValueError(f"{model_cls.__name__} has no config_class: pass an instance-building function instead")
    if hasattr(config_class, "from_pretrained"):  # Hugging Face
        return config_class.from_pretrained(str(folder))
    return config_class.from_json_file(folder / "config.json")


def load_pruned(model_cls: type, folder: str | Path, *, adapter: EncoderAdapter | None = None) -> nn.Module:
    """Load a folder written by :func:`export_pruned` (either kind) into ``model_cls``, strictly."""
    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_FILE}")
    config = _config_of(model_cls, folder)
    model = model_cls(config)
    structure_path = folder / STRUCTURE_FILE
    sizes = (
        getattr(config, "extra", {}).get(LAYER_SIZES_KEY) if isinstance(getattr(config, "extra", None), dict) else None
    )
    if sizes:  # what core's from_pretrained does
        apply_layer_sizes(model, sizes)
    elif structure_path.is_file():
        apply_structure(model, json.loads(structure_path.read_text(encoding="utf-8")), adapter)
    state = load_safetensors(folder / WEIGHTS_FILE)
    # Not a lenient load: every missing or unexpected key raises below, except keys missing only because the
    # saver stored a tied tensor once (load_state_dict cannot know they alias a loaded one).
    result = model.load_state_dict(state, strict=False)
    problems = [k for k in result.missing_keys if not _is_tied(model, k, state)] + list(result.unexpected_keys)
    if problems:
        raise ValueError(f"{folder} does not match {model_cls.__name__}: {problems[:10]}")
    return model.eval()


def _is_tied(model: nn.Module, key: str, state: dict[str, torch.Tensor]) -> bool:
    """A key missing from the file only because the saver stored a shared tensor once."""
    params = dict(model.named_parameters(remove_duplicate=False))
    target = params.get(key)
    if target is None:
        return False
    return any(params.get(other) is target for other in state)
