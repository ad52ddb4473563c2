"""Checks that a saved folder loads through transformers' Auto classes with exactly our outputs.

Used by every family's tests and recorded in model cards; imports transformers when called.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from alicemind.core.modeling import PreTrainedModel


def flat_tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor of an output (our dataclasses, transformers ``ModelOutput``\\ s, tuples), in field order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        out = list(out.values())
    elif hasattr(out, "__dataclass_fields__"):
        out = [getattr(out, name) for name in out.__dataclass_fields__]
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in flat_tensors(item)]
    return []


def auto_load_outputs(
    auto_class_name: str, folder: str | os.PathLike, inputs: Mapping[str, torch.Tensor]
) -> tuple[type, list[torch.Tensor]]:
    """Load ``folder`` with ``transformers.<auto_class_name>`` and run it on ``inputs``: (its class, its tensors)."""
    import transformers

    model = getattr(transformers, auto_class_name).from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(**inputs)
    return type(model), flat_tensors(out)


def max_output_difference(
    ours: PreTrainedModel, auto_class_name: str, folder: str | os.PathLike, inputs: Mapping[str, torch.Tensor]
) -> float:
    """Largest absolute difference between ``ours`` and the Auto-loaded ``folder`` on ``inputs`` (0.0 = equal).

    The Auto model's floating-point tensors are compared, in order, with ours; ours may return more after them
    (e.g. the sentence-order logits beside the MLM logits). Fewer of ours or another shape is a ``ValueError``.
    """
    ours.eval()
    with torch.no_grad():
        expected = flat_tensors(ours(**inputs))
    _, got = auto_load_outputs(auto_class_name, folder, inputs)
    expected = [t for t in expected if t.is_floating_point()]
    got = [t for t in got if t.is_floating_point()]
    expected = expected[: len(got)]
    if not got or [t.shape for t in expected] != [t.shape for t in got]:
        raise ValueError(
            f"{auto_class_name} outputs {[tuple(t.shape) for t in got]}, ours {[tuple(t.shape) for t in expected]}"
        )
    # Equal entries count as 0 (also equal infinities: PALM masks ids beyond its real vocabulary with -inf).
    return max(torch.where(a == b, 0.0, (a.float() - b.float()).abs()).max().item() for a, b in zip(expected, got))


def auto_round_trip(
    model: PreTrainedModel, auto_class_name: str, folder: str | os.PathLike, inputs: Mapping[str, torch.Tensor]
) -> tuple[str, float]:
    """Save ``model`` into ``folder``, load it with ``transformers.<auto_class_name>``: (the class name transformers
    returns, the largest output difference to ``model`` on ``inputs``). Ours exactly: (our class name, 0.0)."""
    model.save_pretrained(folder)
    loaded_class, _ = auto_load_outputs(auto_class_name, folder, inputs)
    return loaded_class.__name__, max_output_difference(model, auto_class_name, folder, inputs)
