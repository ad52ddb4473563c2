"""Evaluation helpers shared by the families' training scripts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from alicemind.core.training.trainer import move_to_device

__all__ = ["mean_output_metrics"]


def mean_output_metrics(model: torch.nn.Module, batches: Iterable[Any]) -> dict[str, float]:
    """Mean of each entry of ``model(**batch).metrics`` over ``batches`` (model in eval mode, no gradients): the
    held-out losses and accuracies of a pre-training objective."""
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for batch in batches:
            for name, value in model(**move_to_device(batch, device)).metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            count += 1
    return {name: total / max(count, 1) for name, total in sums.items()}
