"""``generate``: encode once, then greedy, sampled or beam decoding through the model's cache."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import Tensor

from alicemind.core.generation.beam import beam_search
from alicemind.core.generation.config import GenerationConfig
from alicemind.core.generation.output import GenerationOutput
from alicemind.core.generation.protocol import EncoderDecoderLM, Streamer
from alicemind.core.generation.search import greedy_or_sample, static_greedy_or_sample
from alicemind.core.layers.embeddings import SequenceTooLongError
from alicemind.core.ops.compiling import bucket_length

StreamCallback = Callable[[Tensor, Tensor], None]
_PROTOCOL_METHODS = ("encode", "init_decoder_cache", "decode_step", "reorder_cache")


class CallbackStreamer:
    """Adapts a plain function ``fn(new_token_ids, finished)`` to the :class:`Streamer` protocol."""

    def __init__(self, fn: StreamCallback) -> None:
        self.fn = fn

    def put(self, new_token_ids: Tensor, finished: Tensor) -> None:
        self.fn(new_token_ids, finished)

    def end(self) -> None:
        """Nothing to flush for a plain callback."""


def _as_streamer(streamer: Streamer | StreamCallback | None) -> Streamer | None:
    if streamer is None or isinstance(streamer, Streamer):
        return streamer
    if callable(streamer):
        return CallbackStreamer(streamer)
    raise TypeError(f"streamer must have put/end methods or be callable, got {type(streamer).__name__}")


def _decoder_prompt(
    config: GenerationConfig, batch: int, device: torch.device, decoder_input_ids: Tensor | None
) -> Tensor:
    if decoder_input_ids is not None:
        if decoder_input_ids.dim() != 2 or decoder_input_ids.shape[0] != batch or decoder_input_ids.shape[1] < 1:
            raise ValueError(
                f"decoder_input_ids must be [batch={batch}, P>=1], got shape {tuple(decoder_input_ids.shape)}"
            )
        return decoder_input_ids.to(device=device, dtype=torch.long)
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
    if start is None:
        raise ValueError("set decoder_start_token_id (or bos_token_id) in GenerationConfig, or pass decoder_input_ids")
    return torch.full((batch, 1), start, dtype=torch.long, device=device)


def generate(
    model: EncoderDecoderLM,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    config: GenerationConfig,
    *,
    streamer: Streamer | StreamCallback | None = None,
    generator: torch.Generator | None = None,
    decoder_input_ids: Tensor | None = None,
    static_cache: bool | None = None,
) -> GenerationOutput:
    """Generate from a padded source batch ``input_ids`` ``[B, S]`` with ``model`` (see :class:`EncoderDecoderLM`).

    Decoding starts from ``decoder_input_ids`` ``[B, P]`` (the same length for every row) or else from
    ``config.decoder_start_token_id``. The encoder runs once and its cross-attention keys/values are cached.
    ``streamer`` (greedy and sampling only) gets each step's tokens; ``generator`` seeds sampling.
    Runs under ``torch.no_grad()`` (not inference mode, so the outputs may later feed a training step).

    ``static_cache=True`` decodes over a fixed-size cache (the model's ``init_decoder_cache(..., static=True)``)
    with every row in every step, so the decode step keeps one shape and compiles to one graph; the outputs equal
    the default path's. ``None`` (default) uses it when the model says so (``prefers_static_cache``, set by
    :func:`alicemind.core.ops.optimize_for_inference`) and its ``init_decoder_cache`` takes ``static``.
    """
    missing = [name for name in _PROTOCOL_METHODS if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(f"{type(model).__name__} does not implement EncoderDecoderLM: missing {missing}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, source_length], got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    elif attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids {tuple(input_ids.shape)}"
        )
    if config.num_beams > 1 and streamer is not None:
        raise ValueError("streaming is only supported for greedy decoding and sampling, not beam search")

    prompt = _decoder_prompt(config, input_ids.shape[0], input_ids.device, decoder_input_ids)
    max_new_tokens = config.resolve_max_new_tokens(prompt.shape[1])
    limit = getattr(model, "max_decoder_positions", None)
    if limit is not None and prompt.shape[1] + max_new_tokens > limit:
        raise SequenceTooLongError(
            f"a decoder prompt of {prompt.shape[1]} plus max_new_tokens={max_new_tokens} needs "
            f"{prompt.shape[1] + max_new_tokens} positions; the model's decoder has {limit}: lower max_new_tokens"
        )
    with torch.no_grad():
        encoded = model.encode(input_ids, attention_mask)
        if _use_static_cache(model, static_cache):
            # A bucketed capacity: requests of nearby lengths share the compiled step. The last new token is
            # never fed back, so the cache holds prompt + max_new_tokens - 1 positions (32 new after a 1-token
            # prompt fit the 32 bucket, where a 64 one would double every step's attention and beam reorder).
            capacity = bucket_length(prompt.shape[1] + max_new_tokens - 1)
            cache = model.init_decoder_cache(encoded, attention_mask, capacity, static=True)
            if config.num_beams > 1:
                return beam_search(model, cache, prompt, config, max_new_tokens, static=True)
            return static_greedy_or_sample(
                model, cache, prompt, config, max_new_tokens, streamer=_as_streamer(streamer), generator=generator
            )
        cache = model.init_decoder_cache(encoded, attention_mask, prompt.shape[1] + max_new_tokens)
        if config.num_beams > 1:
            return beam_search(model, cache, prompt, config, max_new_tokens)
        return greedy_or_sample(
            model, cache, prompt, config, max_new_tokens, streamer=_as_streamer(streamer), generator=generator
        )


def _use_static_cache(model: EncoderDecoderLM, requested: bool | None) -> bool:
    try:
        supported = "static" in inspect.signature(model.init_decoder_cache).parameters
    except (TypeError, ValueError):  # a callable without a signature
        supported = False
    if requested and not supported:
        raise TypeError(f"{type(model).__name__}.init_decoder_cache takes no static=: it has no static KV cache")
    if requested is None:
        return supported and bool(getattr(model, "prefers_static_cache", False))
    return requested
