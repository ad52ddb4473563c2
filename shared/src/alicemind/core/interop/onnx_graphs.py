"""What every ONNX graph of ours shares: export settings, ONNX Runtime sessions, random check inputs, and the
comparison with PyTorch that fails beyond the stated tolerance."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

DEFAULT_ATOL = 1e-4
OPSET = 17
EXPORT_SHAPE = (2, 8)  # (batch, sequence) traced at export
CHECK_SHAPES = ((1, 5), (3, 11), (4, 16))  # checked in ONNX Runtime: none is the export's


class OnnxMismatchError(ValueError):
    """ONNX Runtime's outputs differ from PyTorch's beyond the stated tolerance."""


class OnnxUnsupportedError(ValueError):
    """The model (or head) has no ONNX export here; its own class, so a torch-internal NotImplementedError is
    never mistaken for this refusal."""


def ort_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session (all graph optimisations, ``threads`` intra-op threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run ``session`` on torch tensors (only the inputs the graph has); outputs by name, as torch tensors."""
    wanted = {i.name for i in session.get_inputs()}
    arrays = {k: v.detach().cpu().numpy() for k, v in feeds.items() if k in wanted}
    names = [o.name for o in session.get_outputs()]
    return {n: torch.from_numpy(a) for n, a in zip(names, session.run(names, arrays))}


def random_encoder_inputs(model: nn.Module, batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random ids (avoiding the first ids, where special tokens live) and a right-padded mask."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(min(5, vocab - 1), vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        mask[row, max(1, length - 2 * row) :] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if getattr(model.config, "type_vocab_size", 0):
        inputs["token_type_ids"] = torch.zeros_like(ids)
    return inputs


def export_graph(module, args, path, input_names, output_names, axes) -> None:
    """torch's (TorchScript-based) exporter with dynamic ``axes``, at :data:`OPSET`."""
    # The tracer warns where Python reads a tensor (core's "is every token real?" test picks the masked path);
    # every example batch holds padding, so the traced path is the general one. The checks below prove it.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def compare_outputs(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], where: str, atol: float) -> float:
    """Largest |difference| over the outputs of ``expected``; :class:`OnnxMismatchError` beyond ``atol`` or on
    another shape or other infinite positions (names ``where`` the graph and size)."""
    worst = 0.0
    for name, value in expected.items():
        other = got[name]
        if tuple(other.shape) != tuple(value.shape):
            raise OnnxMismatchError(f"{where}: {name} has shape {tuple(other.shape)}, PyTorch {tuple(value.shape)}")
        finite = torch.isfinite(value)
        if not torch.equal(finite, torch.isfinite(other)):
            raise OnnxMismatchError(f"{where}: {name} is infinite at other positions than in PyTorch")
        diff = (value[finite].float() - other[finite].float()).abs().max().item() if finite.any() else 0.0
        if diff > atol:
            raise OnnxMismatchError(f"{where}: {name} differs from PyTorch by {diff:.3g} > tolerance {atol:g}")
        worst = max(worst, diff)
    return worst
