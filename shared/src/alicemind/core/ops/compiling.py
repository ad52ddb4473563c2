"""``torch.compile`` support: a check that a function traces whole and once per shape bucket, and the shape
buckets themselves (pad ragged lengths up to a few sizes so a stream of requests compiles a handful of graphs).
:func:`alicemind.core.ops.inference.optimize_for_inference` builds on these."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

DEFAULT_BUCKETS = (16, 32, 64, 128, 256, 512)


@dataclass
class CompileTrace:
    """What compiling a function over a series of calls produced.

    ``graphs`` is how many graphs dynamo handed to the backend: 1 means one trace served every call. With
    ``fullgraph=True`` a graph break raises instead of splitting, so a finished trace has no break.
    """

    graphs: int = 0
    outputs: list[Any] = field(default_factory=list)

    @property
    def recompilations(self) -> int:
        return max(self.graphs - 1, 0)


@contextmanager
def _dynamic_output_shapes():
    # Padding-free packing gathers the real tokens (``nonzero``): its size depends on the data, and dynamo keeps
    # it in the graph as an unbacked size only when asked to.
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        yield


def trace_calls(
    fn: Callable[..., Any], calls: Iterable[Sequence[Any]], *, backend: str = "eager", dynamic: bool | None = None
) -> CompileTrace:
    """Compile ``fn`` with ``fullgraph=True`` and run it on each argument tuple of ``calls``, counting graphs.

    ``backend="eager"`` (or ``"aot_eager"``, which also traces the backward) checks traceability cheaply, with no
    code generation. Dynamo's caches are reset first so earlier compiles of the same code do not count.
    """
    from torch._dynamo.backends.registry import lookup_backend

    trace = CompileTrace()
    inner = lookup_backend(backend)

    def counting_backend(gm, example_inputs):
        trace.graphs += 1
        return inner(gm, example_inputs)

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=counting_backend, fullgraph=True, dynamic=dynamic)
    with _dynamic_output_shapes():
        for args in calls:
            trace.outputs.append(compiled(*args))
    torch._dynamo.reset()
    return trace


def assert_training_traces_like_eager(
    model: torch.nn.Module, loss: Callable[..., torch.Tensor], calls: Sequence[Sequence[Any]], *, min_grads: int = 10
) -> None:
    """Check that ``loss`` (a training loss of ``model``) traces as one graph over ``calls`` with its backward
    (aot_eager) and that the losses and every parameter's gradient equal eager's (1e-5; gradients rtol 1e-4).
    At least ``min_grads`` parameters must get a gradient, so a loss that reaches no weights cannot pass."""
    trace = trace_calls(loss, calls, backend="aot_eager")
    sum(trace.outputs).backward()
    compiled = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    eager = [loss(*c) for c in calls]
    sum(eager).backward()
    assert trace.graphs == 1, f"{trace.graphs} graphs for {len(eager)} calls of one shape"
    torch.testing.assert_close(torch.stack(trace.outputs), torch.stack(eager), atol=1e-5, rtol=1e-5)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert compiled.keys() == grads.keys() and len(grads) > min_grads, sorted(set(compiled) ^ set(grads))
    for name, got in compiled.items():
        torch.testing.assert_close(got, grads[name], atol=1e-5, rtol=1e-4, msg=name)


def bucket_length(length: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
    """The smallest bucket that holds ``length`` positions (a multiple of the largest one beyond it)."""
    if length < 1:
        raise ValueError(f"a sequence length must be at least 1, got {length}")
    i = bisect.bisect_left(buckets, length)
    if i < len(buckets):
        return buckets[i]
    top = buckets[-1]
    return -(-length // top) * top


def pad_to_bucket(
    tensors: dict[str, torch.Tensor],
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    *,
    mask_key: str = "attention_mask",
    pad_values: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Right-pad every ``[B, L, ...]`` tensor of a batch along dim 1 to the bucket of ``L``; return it and ``L``.

    The mask (``tensors[mask_key]``, 1/True = real) is padded with 0, so the new positions are padding and the
    outputs at the original positions are unchanged; other tensors with ``pad_values[name]`` or 0.
    """
    if mask_key not in tensors:
        raise ValueError(f"padding to a bucket needs the attention mask ({mask_key!r}) to mask the new positions")
    lengths = {t.shape[1] for t in tensors.values() if t.dim() >= 2}
    if len(lengths) != 1:
        raise ValueError(f"batch tensors disagree on the sequence length: {sorted(lengths)}")
    (length,) = lengths
    target = bucket_length(length, buckets)
    pad_values = pad_values or {}
    out = {}
    for name, t in tensors.items():
        if t.dim() < 2 or target == length:
            out[name] = t
            continue
        fill = 0 if name == mask_key else pad_values.get(name, 0)
        extra = t.new_full((t.shape[0], target - length, *t.shape[2:]), fill)
        out[name] = torch.cat([t, extra], dim=1)
    return out, length
