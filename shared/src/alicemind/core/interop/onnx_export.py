"""Export a saved model folder to ONNX with torch's exporter, checked in ONNX Runtime before it is reported done.

Encoders (with their task head) become one graph ``model.onnx`` with dynamic batch and sequence axes.
Encoder-decoders become ``encoder.onnx`` (source ids and mask -> the cross-attention keys/values of every decoder
layer) and ``decoder_step.onnx`` (new decoder ids, the source mask, the past self-attention keys/values and the
cross keys/values -> logits and the grown self-attention keys/values), so a decode loop runs entirely in ONNX
Runtime (:func:`greedy_decode_onnx`). Every graph is run in ONNX Runtime on random inputs at several batch and
sequence sizes other than the export's and compared with PyTorch; a difference beyond ``atol`` is an error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.core.interop.spec import FamilySpec, output_values, spec_for_folder

logger = logging.getLogger(__name__)

DEFAULT_ATOL = 1e-4
OPSET = 17
EXPORT_SHAPE = (2, 8)  # (batch, sequence) traced at export
CHECK_SHAPES = ((1, 5), (3, 11), (4, 16))  # checked in ONNX Runtime: none is the export's


class OnnxMismatchError(ValueError):
    """ONNX Runtime's outputs differ from PyTorch's beyond the stated tolerance."""


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


# -- sessions ---------------------------------------------------------------------------------------------------------
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


# -- encoders ---------------------------------------------------------------------------------------------------------
class _EncoderGraph(nn.Module):
    """``forward(input_ids, attention_mask[, token_type_ids])`` -> the task's output tensors, in field order."""

    def __init__(self, model: nn.Module, task: str, input_names: Sequence[str]):
        super().__init__()
        self.model, self.task, self.input_names = model, task, list(input_names)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = output_values(self.model(**dict(zip(self.input_names, inputs))), self.task)
        return tuple(values.values())


def _encoder_inputs(model: nn.Module, batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
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


def export_encoder(model: nn.Module, task: str, out_dir: Path, atol: float) -> tuple[Path, float, list[str]]:
    """Export ``model`` (eval mode) as ``model.onnx``; returns the file, the max difference, the output names."""
    example = _encoder_inputs(model, *EXPORT_SHAPE, seed=0)
    names = list(example)
    graph = _EncoderGraph(model, task, names).eval()
    with torch.no_grad():
        outputs = list(output_values(model(**example), task))
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    for out_name in outputs:
        axes[out_name] = {0: "batch", 1: "sequence"} if out_name != "pooler_output" else {0: "batch"}
    if task in ("sequence-classification", "multiple-choice"):
        axes.update({n: {0: "batch"} for n in outputs})
    path = out_dir / "model.onnx"
    _export(graph, tuple(example.values()), path, names, outputs, axes)
    session = ort_session(path)
    diff = 0.0
    for i, (batch, length) in enumerate(CHECK_SHAPES):
        feeds = _encoder_inputs(model, batch, length, seed=1 + i)
        with torch.no_grad():
            expected = output_values(model(**feeds), task)
        diff = max(
            diff, compare_outputs(expected, run_session(session, feeds), f"{path.name} at {batch}x{length}", atol)
        )
    return path, diff, outputs


def _export(module, args, path, input_names, output_names, axes) -> None:
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


# -- encoder-decoders -------------------------------------------------------------------------------------------------
class _GrowingKVCache:
    """A self-attention cache that is a graph input: ``append`` concatenates, so the grown tensors can be outputs.

    Quacks like core's caches (``length``, ``append``, ``static``, ``visible``). It says ``static`` so that the
    attention takes its mask from :meth:`visible` instead of comparing sequence lengths in Python (a traced
    length is a tensor, and those comparisons would freeze into the graph); the step graph takes one new token,
    which sees every cached position.
    """

    static = True

    def __init__(self, key: torch.Tensor, value: torch.Tensor):
        self.key, self.value = key, value

    @property
    def length(self) -> int:
        return self.key.shape[2]

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.key, self.value = torch.cat([self.key, key], 2), torch.cat([self.value, value], 2)
        return self.key, self.value

    def visible(self, q_len: int) -> torch.Tensor:
        """Bool ``[1, 1, q_len, keys]``, all True: the one new token attends to every position so far."""
        return torch.ones((1, 1, q_len, self.key.shape[2]), dtype=torch.bool, device=self.key.device)


def _layer_count(model: nn.Module) -> int:
    return len(model.decoder.layers)


def _cache_from_tensors(template: Any, past: Sequence[torch.Tensor], cross: Sequence[torch.Tensor], mask):
    """A decoder cache of ``template``'s type whose layers read the given tensors (core's LayerCache layout)."""
    from alicemind.core.layers.block import LayerCache

    layers = [
        LayerCache(_GrowingKVCache(past[2 * i], past[2 * i + 1]), (cross[2 * i], cross[2 * i + 1]))
        for i in range(len(past) // 2)
    ]
    rows = torch.arange(mask.shape[0], device=mask.device)
    changes: dict[str, Any] = {"layers": layers, "encoder_mask": mask.bool()}
    for field in dataclasses.fields(template):
        if field.name.endswith("_source"):  # which cross-attention row each row reads: its own, here
            changes[field.name] = rows
    return dataclasses.replace(template, **changes)


class _Seq2SeqEncoderGraph(nn.Module):
    """``(input_ids, attention_mask)`` -> cross-attention key and value of every decoder layer."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.model.encode(input_ids, attention_mask)
        cache = self.model.init_decoder_cache(hidden, attention_mask, 1)
        return tuple(t for layer in cache.layers for t in layer.cross_kv)


class _DecoderStepGraph(nn.Module):
    """``(decoder_input_ids, encoder_attention_mask, past k/v..., cross k/v...)`` -> logits, present k/v..."""

    def __init__(self, model: nn.Module, template: Any):
        super().__init__()
        self.model, self.template, self.layers = model, template, _layer_count(model)

    def forward(self, decoder_input_ids, encoder_attention_mask, *kv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = 2 * self.layers
        cache = _cache_from_tensors(self.template, kv[:n], kv[n:], encoder_attention_mask)
        logits = self.model.decode_step(decoder_input_ids, cache)
        return (logits, *[t for layer in cache.layers for t in (layer.self_kv.key, layer.self_kv.value)])


def _names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}_{kind}.{i}" for i in range(layers) for kind in ("key", "value")]


def _empty_past(model: nn.Module, batch: int, length: int = 0) -> list[torch.Tensor]:
    attn = model.decoder.layers[0].self_attn
    shape = (batch, attn.num_heads, length, attn.head_dim)
    return [torch.zeros(shape) for _ in range(2 * _layer_count(model))]


def export_seq2seq(model: nn.Module, out_dir: Path, atol: float) -> tuple[list[Path], dict[str, float]]:
    """Export ``encoder.onnx`` and ``decoder_step.onnx`` and check both in ONNX Runtime, step by step."""
    if getattr(model, "copy_gate", None) is not None:
        raise NotImplementedError("ONNX export of a pointer-generator model is not supported (its copy state)")
    layers = _layer_count(model)
    cross_names, past_names = _names("cross", layers), _names("past", layers)
    example = _encoder_inputs(model, *EXPORT_SHAPE, seed=0)
    ids, mask = example["input_ids"], example["attention_mask"]
    enc_path, step_path = out_dir / "encoder.onnx", out_dir / "decoder_step.onnx"
    enc_axes = {"input_ids": {0: "batch", 1: "source"}, "attention_mask": {0: "batch", 1: "source"}}
    enc_axes.update({n: {0: "batch", 2: "source"} for n in cross_names})
    _export(_Seq2SeqEncoderGraph(model).eval(), (ids, mask), enc_path, ["input_ids", "attention_mask"],
            cross_names, enc_axes)  # fmt: skip
    with torch.no_grad():
        cross = _Seq2SeqEncoderGraph(model)(ids, mask)
        template = model.init_decoder_cache(model.encode(ids, mask), mask, 1)
    step = _DecoderStepGraph(model, template).eval()
    dec_ids = torch.full((ids.shape[0], 1), 7)
    inputs = ["decoder_input_ids", "encoder_attention_mask", *past_names, *cross_names]
    present_names = _names("present", layers)
    # One new token per step (greedy and beam decoding feed one): the new-token axis is fixed at 1.
    step_axes = {"decoder_input_ids": {0: "batch"}, "encoder_attention_mask": {0: "batch", 1: "source"}}
    step_axes.update({n: {0: "batch", 2: "past"} for n in past_names})
    step_axes.update({n: {0: "batch", 2: "source"} for n in cross_names})
    step_axes.update({n: {0: "batch", 2: "total"} for n in present_names})
    step_axes["logits"] = {0: "batch"}
    _export(step, (dec_ids, mask, *_empty_past(model, ids.shape[0], 3), *cross), step_path, inputs,
            ["logits", *present_names], step_axes)  # fmt: skip
    return [enc_path, step_path], _check_seq2seq(model, enc_path, step_path, atol)


def _check_seq2seq(model: nn.Module, enc_path: Path, step_path: Path, atol: float, steps: int = 4) -> dict[str, float]:
    """Teacher-forced steps in ONNX Runtime against PyTorch's decode_step on the same tokens."""
    encoder, decoder = ort_session(enc_path), ort_session(step_path)
    layers = _layer_count(model)
    worst = {enc_path.name: 0.0, step_path.name: 0.0}
    for i, (batch, length) in enumerate(CHECK_SHAPES):
        feeds = _encoder_inputs(model, batch, length, seed=1 + i)
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        with torch.no_grad():
            hidden = model.encode(ids, mask)
            cache = model.init_decoder_cache(hidden, mask, steps + 1)
        expected_cross = {
            n: t for n, t in zip(_names("cross", layers), (t for lc in cache.layers for t in lc.cross_kv))
        }
        got_cross = run_session(encoder, feeds)
        where = f"{enc_path.name} at {batch}x{length}"
        worst[enc_path.name] = max(worst[enc_path.name], compare_outputs(expected_cross, got_cross, where, atol))
        past = dict(zip(_names("past", layers), _empty_past(model, batch)))
        g = torch.Generator().manual_seed(100 + i)
        for t in range(steps):
            token = torch.randint(5, model.config.vocab_size, (batch, 1), generator=g)
            with torch.no_grad():
                expected = model.decode_step(token, cache)
            got = run_session(
                decoder, {"decoder_input_ids": token, "encoder_attention_mask": mask, **past, **got_cross}
            )
            where = f"{step_path.name} at {batch}x{length}, step {t}"
            worst[step_path.name] = max(worst[step_path.name], compare_outputs({"logits": expected}, got, where, atol))
            past = {n.replace("present", "past"): got[n] for n in got if n.startswith("present")}
    return worst


def greedy_decode_onnx(
    encoder, decoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, start_id: int, eos_id: int,
    pad_id: int, max_new_tokens: int,
) -> torch.Tensor:  # fmt: skip
    """Greedy decoding run entirely in ONNX Runtime sessions of ``encoder.onnx`` / ``decoder_step.onnx``.

    Returns ``[B, 1 + T]``: the start token, then the tokens (a finished row continues with ``pad_id``).
    """
    cross = run_session(encoder, {"input_ids": input_ids, "attention_mask": attention_mask})
    past_inputs = [i for i in decoder.get_inputs() if i.name.startswith("past_")]
    batch = input_ids.shape[0]
    past = {}
    for info in past_inputs:
        layer_cross = cross[info.name.replace("past", "cross")]
        past[info.name] = torch.zeros((batch, layer_cross.shape[1], 0, layer_cross.shape[3]))
    tokens = torch.full((batch, 1), start_id, dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool)
    for _ in range(max_new_tokens):
        feeds = {"decoder_input_ids": tokens[:, -1:], "encoder_attention_mask": attention_mask, **past, **cross}
        out = run_session(decoder, feeds)
        step = out["logits"][:, -1].argmax(-1)
        step = torch.where(done, torch.full_like(step, pad_id), step)
        tokens = torch.cat([tokens, step[:, None]], 1)
        done |= step == eos_id
        past = {n.replace("present", "past"): v for n, v in out.items() if n.startswith("present")}
        if bool(done.all()):
            break
    return tokens


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
        feeds = _encoder_inputs(model, batch, length, seed=1 + i)
        with torch.no_grad():
            expected = output_values(model(**feeds), task)
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
        feeds = _encoder_inputs(model, batch, length, seed=1 + i)
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
