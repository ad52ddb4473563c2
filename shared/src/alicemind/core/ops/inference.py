"""``optimize_for_inference``: one switch that compiles a model for serving (inductor with weight freezing on CPU,
CUDA graphs through ``reduce-overhead`` on GPU), reuses the compile cache across processes and reports what each
new input shape cost to compile."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.core.ops.compiling import DEFAULT_BUCKETS, pad_to_bucket

__all__ = ["DEFAULT_BUCKETS", "InferenceModel", "optimize_for_inference", "pad_to_bucket"]

# Methods of the generation protocol that run the network; each is compiled on its own.
_GENERATION_METHODS = ("encode", "decode_step")


def _shape_key(args: tuple, kwargs: dict) -> tuple:
    def key(v):
        return (tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else type(v).__name__

    return tuple(key(a) for a in args) + tuple((k, key(v)) for k, v in sorted(kwargs.items()))


class _Timed:
    """A compiled callable that, on each input shape it has not seen, times the call (compilation included)."""

    def __init__(self, name: str, fn: Callable, report: Callable[[str], None], seconds: dict):
        self.name, self.fn, self.report, self.seconds = name, fn, report, seconds

    def __call__(self, *args, **kwargs):
        key = (self.name, _shape_key(args, kwargs))
        if key in self.seconds:
            return self.fn(*args, **kwargs)
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.seconds[key] = time.perf_counter() - start
        self.report(f"compiled {self.name} for a new input shape in {self.seconds[key]:.1f} s")
        return out


class InferenceModel:
    """A compiled view of ``model``: calling it (and ``encode`` / ``decode_step`` of a generation model) runs the
    compiled graphs without autograd; every other attribute is the original model's.

    ``compile_seconds`` maps ``(method, input shapes)`` to the first call's time, compilation included.
    ``prefers_static_cache`` tells :func:`alicemind.core.generation.generate` to decode over a static KV cache
    where the model has one: every step then has the same shapes, so ``decode_step`` is one compiled graph.
    """

    prefers_static_cache = True

    def __init__(self, model: nn.Module, compile_fn: Callable[[Callable], Callable], report: Callable[[str], None]):
        self.__dict__["model"] = model
        self.__dict__["compile_seconds"] = {}
        self.__dict__["_forward"] = _Timed("forward", compile_fn(model), report, self.compile_seconds)
        for name in _GENERATION_METHODS:
            if callable(getattr(model, name, None)):
                fn = _Timed(name, compile_fn(getattr(model, name)), report, self.compile_seconds)
                self.__dict__[name] = _no_grad(fn)

    def __call__(self, *args, **kwargs):
        with torch.no_grad():
            return self._forward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["model"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__dict__["model"], name, value)


def _no_grad(fn: Callable) -> Callable:
    def call(*args, **kwargs):
        with torch.no_grad():
            return fn(*args, **kwargs)

    return call


def _traced_whole(compiled: Callable, *, freezing: bool) -> Callable:
    """``compiled`` run with the settings its first call of each shape is traced and compiled under.

    Data-dependent output shapes stay in the graph: a padding-free encoder gathers its real tokens with
    ``nonzero``, which would otherwise split the graph there and recompile for each batch's token count.
    ``freezing`` turns inductor's weight freezing on: ``torch.compile(options={"freezing": True})`` does not reach
    the pass that decides it (torch 2.13: the graphs kept ``aten::addmm`` on fp32 weights), so it is set here."""

    def call(*args, **kwargs):
        with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
            if not freezing:
                return compiled(*args, **kwargs)
            with torch._inductor.config.patch(freezing=True):
                return compiled(*args, **kwargs)

    return call


def _stderr(message: str) -> None:
    print(f"alicemind: {message}", file=sys.stderr, flush=True)


def optimize_for_inference(
    model: nn.Module,
    *,
    cache_dir: str | Path | None = None,
    dynamic: bool | None = None,
    freeze: bool = True,
    backend: str = "inductor",
    report: Callable[[str], None] | None = _stderr,
) -> InferenceModel | nn.Module:
    """Put ``model`` in eval mode and compile it for inference on its device.

    CPU: inductor with weight freezing (weights become constants, linear layers get oneDNN-prepacked weights).
    CUDA: ``mode="reduce-overhead"`` (CUDA graphs). Compiled artifacts go to inductor's on-disk cache, so a
    second process with the same model and shapes skips most of the work; ``cache_dir`` chooses its folder
    (``TORCHINDUCTOR_CACHE_DIR``). Each new input shape is compiled once and its cost reported through
    ``report`` (stderr by default; None is silent). Pad ragged batches to a few lengths with
    :func:`pad_to_bucket` (buckets ``DEFAULT_BUCKETS``) so a stream of requests compiles a handful of graphs;
    ``dynamic=True`` compiles one shape-generic graph instead. Outputs equal the eager model's (about 1e-5 fp32).
    A generation model with a static KV cache (``init_decoder_cache(..., static=True)``) decodes over it when
    called through ``alicemind.core.generation.generate``: the prompt is one graph and every later step one more
    (per row count), with the projection and LM-head weights frozen and prepacked on CPU.
    ``backend`` other than inductor (``"aot_eager"``: tracing only, no code generation) is for checks.

    A model whose inference drives several parts itself (mPLUG: image encoder, fusion, then its own decoding
    loop) defines ``optimize_parts_for_inference(compile_part)``: it is handed a function that compiles one module
    with these settings (returning its :class:`InferenceModel`), compiles what it runs, and is returned itself.
    """
    own = getattr(model, "optimize_parts_for_inference", None)
    if callable(own):
        settings = dict(cache_dir=cache_dir, dynamic=dynamic, freeze=freeze, backend=backend, report=report)
        model.eval()
        own(lambda part: optimize_for_inference(part, **settings))
        return model
    params = next(iter(model.parameters()), None)
    device = params.device if params is not None else torch.device("cpu")
    if cache_dir is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache_dir).resolve())
    torch._inductor.config.fx_graph_cache = True
    model.eval()
    options: dict[str, Any] = {}
    if backend == "inductor" and device.type == "cuda":
        options = {"mode": "reduce-overhead"}
    frozen = backend == "inductor" and device.type == "cpu" and freeze

    def compile_fn(fn):
        return _traced_whole(torch.compile(fn, backend=backend, dynamic=dynamic, **options), freezing=frozen)

    return InferenceModel(model, compile_fn, report or (lambda _: None))
