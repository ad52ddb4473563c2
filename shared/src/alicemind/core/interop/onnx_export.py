"""Export a saved model folder to ONNX with torch's exporter, checked in ONNX Runtime before it is reported done.

Encoders (with their task head) become one graph ``model.onnx`` with dynamic batch and sequence axes.
Encoder-decoders become ``encoder.onnx`` and ``decoder_step.onnx`` with the KV cache as inputs and outputs
(:mod:`alicemind.core.interop.onnx_seq2seq`), so a decode loop runs entirely in ONNX Runtime. Every graph is run in ONNX Runtime on random inputs at several batch and
sequence sizes other than the export's and compared with PyTorch; a difference beyond ``atol`` is an error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from alicemind.core.interop.onnx_graphs import (
    CHECK_SHAPES,
    DEFAULT_ATOL,
    EXPORT_SHAPE,
    OPSET,
    OnnxMismatchError,
    OnnxUnsupportedError,
    compare_outputs,
    export_graph,
    ort_session,
    random_encoder_inputs,
    run_session,
)
from alicemind.core.interop.onnx_seq2seq import export_seq2seq, greedy_decode_onnx
from alicemind.core.interop.spec import FamilySpec, output_values, spec_for_folder

__all__ = [
    "CHECK_SHAPES",
    "DEFAULT_ATOL",
    "EXPORT_SHAPE",
    "ExportReport",
    "OnnxMismatchError",
    "compare_outputs",
    "export_onnx",
    "greedy_decode_onnx",
    "ort_session",
    "run_session",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ExportReport:
    """What was written and how closely ONNX Runtime matched PyTorch (max abs difference per graph)."""

    task: str
    files: list[Path]
    max_abs_diff: dict[str, float]
    atol: float
    quantized: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"task {self.task}: wrote {', '.join(p.name for p in self.files)}"]
        for name, diff in self.max_abs_diff.items():
            out.append(
                f"{name}: ONNX Runtime vs PyTorch max |diff| {diff:.2e} (tolerance {self.atol:g}) at {_shapes()}"
            )
        for name, change in self.quantized.items():
            parts = ", ".join(f"{k} {v:.4g}" for k, v in change.items())
            out.append(f"{name} int8: {parts}")
        return out


def _shapes() -> str:
    return ", ".join(f"{b}x{s}" for b, s in CHECK_SHAPES)


def graph_outputs(out, task: str) -> dict[str, torch.Tensor]:
    """:func:`~alicemind.core.interop.spec.output_values` with tuples spread out (``logits.0``, ``logits.1``...):
    a graph's outputs are tensors (a pre-training model returns its MLM and sentence logits as a pair)."""
    flat = {}
    for name, value in output_values(out, task).items():
        if isinstance(value, (tuple, list)):
            flat.update({f"{name}.{i}": item for i, item in enumerate(value)})
        elif isinstance(value, torch.Tensor):
            flat[name] = value
    return flat


# -- encoders ---------------------------------------------------------------------------------------------------------
class _EncoderGraph(nn.Module):
    """``forward(input_ids, attention_mask[, token_type_ids])`` -> the task's output tensors, in field order."""

    def __init__(self, model: nn.Module, task: str, input_names: Sequence[str]):
        super().__init__()
        self.model, self.task, self.input_names = model, task, list(input_names)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = graph_outputs(self.model(**dict(zip(self.input_names, inputs))), self.task)
        return tuple(values.values())


def export_encoder(model: nn.Module, task: str, out_dir: Path, atol: float) -> tuple[Path, float, list[str]]:
    """Export ``model`` (eval mode) as ``model.onnx``; returns the file, the max difference, the output names."""
    example = random_encoder_inputs(model, *EXPORT_SHAPE, seed=0)
    names = list(example)
    graph = _EncoderGraph(model, task, names).eval()
    try:
        with torch.no_grad():
            first = graph_outputs(model(**example), task)
    except (TypeError, ValueError) as err:  # lattice positions, boxes, images...: inputs we do not synthesise
        raise OnnxUnsupportedError(
            f"ONNX export of {type(model).__name__} is not supported: it needs more than {names} ({err})"
        ) from err
    with torch.no_grad():
        other = graph_outputs(model(**random_encoder_inputs(model, EXPORT_SHAPE[0] + 1, EXPORT_SHAPE[1] + 1, 0)), task)
    outputs = list(first)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    for out_name in outputs:  # an output axis is dynamic where it moved with the input's batch or sequence
        moved = [d for d, (a, b) in enumerate(zip(first[out_name].shape, other[out_name].shape)) if a != b]
        axes[out_name] = {d: ("batch" if d == 0 else "sequence") for d in moved}
    path = out_dir / "model.onnx"
    export_graph(graph, tuple(example.values()), path, names, outputs, axes)
    session = ort_session(path)
    diff = 0.0
    for i, (batch, length) in enumerate(CHECK_SHAPES):
        feeds = random_encoder_inputs(model, batch, length, seed=1 + i)
        with torch.no_grad():
            expected = graph_outputs(model(**feeds), task)
        diff = max(
            diff, compare_outputs(expected, run_session(session, feeds), f"{path.name} at {batch}x{length}", atol)
        )
    return path, diff, outputs


# -- the command's entry point ----------------------------------------------------------------------------------------
def default_task(spec: FamilySpec, folder: Path) -> str:
    """The task of the class that saved ``folder`` (recorded in model.safetensors), else the family's base."""
    from safetensors import safe_open

    weights = folder / "model.safetensors"
    saved_by = None
    if weights.is_file():
        with safe_open(str(weights), "pt") as f:
            saved_by = (f.metadata() or {}).get("model_class")
    for task, cls in spec.models.items():
        if cls.__name__ == saved_by:
            return task
    return "seq2seq-lm" if spec.is_encoder_decoder else "base"


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    task: str | None = None,
    quantize: str | None = None,
    atol: float = DEFAULT_ATOL,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> ExportReport:
    """Export the model in ``model_dir`` for ``task`` into ``out_dir``, checked in ONNX Runtime (see module doc).

    ``quantize="int8"`` also writes dynamically quantised ``*.int8.onnx`` graphs and reports how far they move
    the outputs. Errors: a missing folder (``FileNotFoundError``), an unknown model_type, a task the family has
    no head for (:class:`NoHeadError`), a non-empty ``out_dir`` without ``overwrite``, a mismatch beyond ``atol``.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if quantize not in (None, "int8"):
        raise ValueError(f"unknown quantisation {quantize!r}; supported: int8")
    spec = spec_for_folder(model_dir)
    task = task or default_task(spec, model_dir)
    model_class = spec.model_class(task)
    if task == "multiple-choice":
        raise OnnxUnsupportedError(
            "ONNX export of a multiple-choice head ([batch, choices, length] inputs) is not supported"
        )
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty (pass --overwrite to write into it)")
    _require_onnx()
    model = model_class.from_pretrained(model_dir).eval()
    _no_padding_free(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    if task == "seq2seq-lm":
        files, diffs = export_seq2seq(model, out_dir, atol)
    else:
        path, diff, _ = export_encoder(model, task, out_dir, atol)
        files, diffs = [path], {path.name: diff}
    report = ExportReport(task, files, diffs, atol)
    if quantize:
        report.quantized = _quantize_and_measure(model, task, files)
        report.files += [p.with_suffix(".int8.onnx") for p in files]
    manifest = {
        "model_type": spec.model_type,
        "task": task,
        "opset": OPSET,
        "files": [p.name for p in report.files],
        "checked_shapes": [list(s) for s in CHECK_SHAPES],
        "tolerance": atol,
        "max_abs_diff": diffs,
        "int8": report.quantized,
    }
    (out_dir / "onnx_export.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for line in report.lines():
        log(line)
    return report


def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxruntime") if not _importable(name)]
    if missing:
        raise ModuleNotFoundError(f"ONNX export needs {' and '.join(missing)}: pip install 'alicemind-core[onnx]'")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _no_padding_free(model: nn.Module) -> None:
    """Run every stack on padded batches (same outputs): the packed path selects rows by the mask's values,
    which a traced graph would freeze to the example's padding."""
    for module in model.modules():
        if hasattr(module, "padding_free"):
            module.padding_free = False


def _quantize_and_measure(model: nn.Module, task: str, files: list[Path]) -> dict[str, dict[str, float]]:
    """Dynamic int8 weights for every graph; per graph: max |diff| to PyTorch and top-1 agreement."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for path in files:
        quantize_dynamic(str(path), str(path.with_suffix(".int8.onnx")), weight_type=QuantType.QInt8)
    if task == "seq2seq-lm":
        enc, step = (p.with_suffix(".int8.onnx") for p in files)
        return {step.name: _seq2seq_drift(model, enc, step)}
    session = ort_session(files[0].with_suffix(".int8.onnx"))
    diff, agree, total = 0.0, 0, 0
    for i, (batch, length) in enumerate(CHECK_SHAPES):
        feeds = random_encoder_inputs(model, batch, length, seed=1 + i)
        with torch.no_grad():
            expected = graph_outputs(model(**feeds), task)
        got = run_session(session, feeds)
        for name, value in expected.items():
            diff = max(diff, (value - got[name]).abs().max().item())
            if name != "last_hidden_state" and name != "pooler_output":
                agree += int((value.argmax(-1) == got[name].argmax(-1)).sum())
                total += value.argmax(-1).numel()
    result = {"max_abs_diff": diff}
    if total:
        result["top1_agreement"] = agree / total
    return {files[0].with_suffix(".int8.onnx").name: result}


def _seq2seq_drift(model: nn.Module, enc_path: Path, step_path: Path) -> dict[str, float]:
    """Greedy tokens of the int8 graphs against PyTorch's greedy decode (core.generation) on random sources."""
    from alicemind.core.generation import GenerationConfig, generate

    encoder, decoder = ort_session(enc_path), ort_session(step_path)
    defaults = model.generation_defaults()
    agree = total = 0
    for i, (batch, length) in enumerate(CHECK_SHAPES):
        feeds = random_encoder_inputs(model, batch, length, seed=1 + i)
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        expected = generate(model, ids, mask, GenerationConfig(**defaults, max_new_tokens=8)).sequences
        got = greedy_decode_onnx(
            encoder, decoder, ids, mask, start_id=defaults["decoder_start_token_id"],
            eos_id=defaults["eos_token_id"], pad_id=defaults["pad_token_id"], max_new_tokens=8,
        )  # fmt: skip
        width = min(expected.shape[1], got.shape[1])
        agree += int((expected[:, :width] == got[:, :width]).sum())
        total += expected[:, :width].numel()
    return {"greedy_token_agreement": agree / total}
