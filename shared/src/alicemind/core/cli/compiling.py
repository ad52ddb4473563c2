"""``--compile`` for every CLI verb that runs a model: one switch over :func:`alicemind.core.ops.optimize_for_inference`.

A family adds the flags with :func:`add_compile_arguments` and wraps the verb's function with :func:`compile_scope`;
wherever the verb (or a runner it calls) has its model, ``model = maybe_optimize(model)`` compiles it when the
flag is on and returns it unchanged otherwise. While compiling, :func:`inference_buckets` gives the shape buckets
a collator should pad batch lengths to (``DataCollatorWithPadding(..., bucket_lengths=inference_buckets())``), so a
stream of ragged batches compiles a handful of graphs instead of one per length. A verb that holds its model and
collator itself may pass its ``args`` instead of using the scope: ``maybe_optimize(model, args)``,
``inference_buckets(max_length, args)``. Call ``model.eval()`` before compiling: it returns the eager module.

``--compile-backend`` (default ``$ALICEMIND_COMPILE_BACKEND``, else ``inductor``) picks the torch.compile backend;
``aot_eager`` or ``eager`` trace without generating code, which is what tests use.
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import os
from collections.abc import Callable
from typing import Any

from alicemind.core.cli.errors import CliError

BACKEND_ENV = "ALICEMIND_COMPILE_BACKEND"
BACKENDS = ("inductor", "aot_eager", "eager")

# The backend the running verb asked for (None: run eagerly). A context variable, so nested and threaded runs of
# the command in one process (tests) do not see each other's setting.
_ACTIVE_BACKEND: contextvars.ContextVar[str | None] = contextvars.ContextVar("alicemind_compile", default=None)


def default_backend() -> str:
    """``$ALICEMIND_COMPILE_BACKEND`` or ``inductor``; an unknown name is a one-line error."""
    backend = os.environ.get(BACKEND_ENV) or "inductor"
    if backend not in BACKENDS:
        raise CliError(f"{BACKEND_ENV}={backend!r} is not a compile backend; choose one of {', '.join(BACKENDS)}")
    return backend


def add_compile_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--compile`` and ``--compile-backend`` to a verb that runs a model."""
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the model first (alicemind.core.ops.optimize_for_inference: inductor with frozen weights "
        "on CPU, CUDA graphs on GPU); batches are padded to a few bucket lengths so only a handful of shapes "
        "compile, each compile's cost is reported on stderr, and the outputs are the eager ones",
    )
    parser.add_argument(
        "--compile-backend",
        choices=BACKENDS,
        default=None,
        help=f"torch.compile backend for --compile (default ${BACKEND_ENV} or inductor; aot_eager and eager "
        "only trace, for checks)",
    )


def requested_backend(args: argparse.Namespace) -> str | None:
    """The backend ``args`` ask for, or None when ``--compile`` is off."""
    if not getattr(args, "compile", False):
        return None
    return getattr(args, "compile_backend", None) or default_backend()


def compile_scope(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a verb's function so that, during the call, :func:`maybe_optimize` follows its ``--compile``."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        token = _ACTIVE_BACKEND.set(requested_backend(args))
        try:
            return func(args)
        finally:
            _ACTIVE_BACKEND.reset(token)

    return run


def compiling() -> bool:
    """Whether the running verb asked for ``--compile``."""
    return _ACTIVE_BACKEND.get() is not None


def inference_buckets(max_length: int | None = None, args: argparse.Namespace | None = None) -> tuple[int, ...] | None:
    """The bucket lengths to pad batches to while compiling (core's ``DEFAULT_BUCKETS``, cut at ``max_length``,
    the longest input or the model's position limit, which becomes the last bucket), else None. Compiling means
    ``args.compile`` when ``args`` is given, else the running verb's ``--compile``."""
    if not (requested_backend(args) if args is not None else compiling()):
        return None
    from alicemind.core.ops.compiling import DEFAULT_BUCKETS

    if max_length is None:
        return DEFAULT_BUCKETS
    return (*(b for b in DEFAULT_BUCKETS if b < max_length), max_length)


def maybe_optimize(model: Any, args: argparse.Namespace | None = None) -> Any:
    """``optimize_for_inference(model)`` when ``--compile`` is on (from ``args``, else the running verb), else
    ``model`` unchanged. The result is called like the model; its other attributes are the model's."""
    backend = requested_backend(args) if args is not None else _ACTIVE_BACKEND.get()
    from alicemind.core import ops

    if backend is None or isinstance(model, ops.InferenceModel):  # already compiled: one wrapper is enough
        return model
    if getattr(model, "parts_optimized_for_inference", False):  # compiled its own parts already
        return model
    return ops.optimize_for_inference(model, backend=backend)
