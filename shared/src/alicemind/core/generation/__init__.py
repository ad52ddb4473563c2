"""Incremental decoding for any encoder-decoder exposing encode / decode-step with a cache.

Greedy, sampling (temperature, top-k, top-p) and beam search (length penalty, min/max length, n-gram
blocking), batched, with finished rows dropped from the work. Models implement :class:`EncoderDecoderLM`.
"""

from alicemind.core.generation.beam import beam_search
from alicemind.core.generation.config import GenerationConfig, length_penalty
from alicemind.core.generation.engine import CallbackStreamer, generate
from alicemind.core.generation.output import GenerationOutput
from alicemind.core.generation.processors import (
    StepScores,
    apply_repetition_penalty,
    no_repeat_ngram_mask,
    sampling_logits,
    step_scores,
    top_k_filter,
    top_p_filter,
)
from alicemind.core.generation.protocol import EncoderDecoderLM, Streamer
from alicemind.core.generation.search import greedy_or_sample, static_greedy_or_sample

__all__ = [
    "CallbackStreamer",
    "EncoderDecoderLM",
    "GenerationConfig",
    "GenerationOutput",
    "StepScores",
    "Streamer",
    "apply_repetition_penalty",
    "beam_search",
    "generate",
    "greedy_or_sample",
    "length_penalty",
    "no_repeat_ngram_mask",
    "sampling_logits",
    "static_greedy_or_sample",
    "step_scores",
    "top_k_filter",
    "top_p_filter",
]
