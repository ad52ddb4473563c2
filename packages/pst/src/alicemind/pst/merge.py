"""Back to plain modules: each SparseLinear becomes the nn.Linear / Conv1D it replaced, carrying ``M * W``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.pst.convert import _set_submodule, sparse_layers
from alicemind.pst.layer import SparseLinear

SPARSITY_FILE = "pst_sparsity.json"


@dataclass(frozen=True)
class LayerSparsity:
    """One merged matrix: its shape, how many entries are zero, and the fraction."""

    name: str
    shape: tuple[int, int]
    zeros: int
    numel: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0


@dataclass
class SparsityReport:
    """Per-layer and overall sparsity of the merged matrices."""

    layers: list[LayerSparsity] = field(default_factory=list)

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Zeros over all merged weights."""
        return self.zeros / self.numel if self.numel else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: overall numbers and one entry per layer."""
        return {
            "sparsity": self.sparsity,
            "zeros": self.zeros,
            "numel": self.numel,
            "layers": [asdict(layer) | {"sparsity": layer.sparsity} for layer in self.layers],
        }

    def markdown(self) -> str:
        """A table, one row per layer, and the total."""
        rows = ["| layer | shape | sparsity |", "|---|---|---|"]
        rows += [f"| {x.name} | {x.shape[0]}x{x.shape[1]} | {100 * x.sparsity:.2f}% |" for x in self.layers]
        rows.append(f"| total | {self.numel:,} weights | {100 * self.sparsity:.2f}% |")
        return "\n".join(rows) + "\n"


def _plain_module(layer: SparseLinear) -> nn.Module:
    weight = layer.masked_weight()
    has_bias = layer.bias is not None
    if layer.source_layout == "conv1d":
        # Hugging Face's Conv1D(nf=out, nx=in) keeps its weight as [in, out].
        module = layer.source_class(layer.out_features, layer.in_features)
        module.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            module.weight.copy_(weight.t())
            if has_bias:
                module.bias.copy_(layer.bias)
    else:
        module = nn.Linear(layer.in_features, layer.out_features, bias=has_bias, device=weight.device,
                           dtype=weight.dtype)  # fmt: skip
        with torch.no_grad():
            module.weight.copy_(weight)
            if has_bias:
                module.bias.copy_(layer.bias)
    for name, param in module.named_parameters():
        param.requires_grad_(getattr(layer, name).requires_grad)
    return module


def merge_pst(model: nn.Module) -> SparsityReport:
    """Replace every SparseLinear of ``model`` in place by its plain module with the masked weight (zeros kept,
    dense layout) at the layer's current sparsity; returns the sparsity of each merged matrix."""
    report = SparsityReport()
    layers = list(sparse_layers(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no SparseLinear to merge (was convert_to_pst called?)")
    for name, layer in layers:
        plain = _plain_module(layer)
        zeros = int((plain.weight == 0).sum())
        report.layers.append(LayerSparsity(name, (layer.out_features, layer.in_features), zeros, plain.weight.numel()))
        _set_submodule(model, name, plain)
    return report


def save_merged(model: nn.Module, directory: str | Path, report: SparsityReport | None = None) -> Path:
    """Write a merged model as safetensors (``save_pretrained`` when the model has it, so Hugging Face models
    keep their config) and the sparsity report as ``pst_sparsity.json``; returns the folder."""
    if any(True for _ in sparse_layers(model)):
        raise ValueError("the model still holds SparseLinear modules: call merge_pst(model) first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(directory)  # safetensors by default (transformers and our families)
    else:
        from alicemind.core.checkpoint import save_safetensors

        save_safetensors(model.state_dict(), directory / "model.safetensors")
    if report is not None:
        (directory / SPARSITY_FILE).write_text(json.dumps(report.to_dict(), indent=1), encoding="utf-8")
    return directory
