"""The result of :func:`alicemind.core.generation.generate`."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class GenerationOutput:
    """Generated sequences, ``num_return_sequences`` consecutive rows per source row.

    Attributes:
        sequences: ``[B * n, T]`` decoder prompt followed by the generated tokens (EOS included), then the pad id.
            ``T`` is the prompt length plus the longest generated length in the batch.
        scores: ``[B * n]`` sum of the model's log-probabilities of the generated tokens.
        lengths: ``[B * n]`` number of generated tokens per row (EOS included, prompt excluded).
        sequence_scores: ``[B * n]`` beam search only: the length-penalised score the beams were ranked by
            (``scores / lp(lengths)``); rows of a source are sorted best first. ``None`` otherwise.
    """

    sequences: Tensor
    scores: Tensor
    lengths: Tensor
    sequence_scores: Tensor | None = None
