"""Greedy decoding and sampling, batched, with finished rows dropped from the work."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from alicemind.core.generation.config import GenerationConfig
from alicemind.core.generation.output import GenerationOutput
from alicemind.core.generation.processors import rescue_dead_rows, sampling_logits, step_scores
from alicemind.core.generation.protocol import EncoderDecoderLM, Streamer


def greedy_or_sample(
    model: EncoderDecoderLM,
    cache: Any,
    prompt: Tensor,
    config: GenerationConfig,
    max_new_tokens: int,
    *,
    streamer: Streamer | None = None,
    generator: torch.Generator | None = None,
) -> GenerationOutput:
    """Decode ``prompt`` ``[B, P]`` greedily (or by sampling when ``config.do_sample``) from a fresh ``cache``.

    A row leaves the active batch (``reorder_cache``) as soon as it emits EOS, so later steps run only the
    rows still going. Random draws come from ``generator`` when given.
    """
    batch, prompt_len = prompt.shape
    copies = config.num_return_sequences
    rows = batch * copies
    pad = config.resolve_pad_token_id()
    eos_ids = config.eos_ids
    eos = torch.tensor(eos_ids, dtype=prompt.dtype, device=prompt.device)
    needs_history = config.no_repeat_ngram_size > 0 or config.repetition_penalty != 1.0

    sequences = prompt.new_full((rows, prompt_len + max_new_tokens), pad)
    sequences[:, :prompt_len] = prompt.repeat_interleave(copies, dim=0)
    lengths = torch.zeros(rows, dtype=torch.long, device=prompt.device)
    active = torch.arange(rows, device=prompt.device)

    # The prompt runs once per source row; only then is the cache copied for extra samples.
    logits = model.decode_step(prompt, cache)[:, -1]
    if copies > 1:
        expand = torch.arange(batch, device=prompt.device).repeat_interleave(copies)
        cache = model.reorder_cache(cache, expand)
        logits = logits[expand]

    sums: Tensor | None = None
    tokens = prompt[:, -1]
    for step in range(max_new_tokens):
        if step > 0:
            logits = model.decode_step(tokens.unsqueeze(1), cache)[:, -1]
        position = prompt_len + step
        history = sequences[active, :position] if needs_history else None
        logprobs, allowed = step_scores(logits, history, config, step)
        allowed = rescue_dead_rows(allowed, eos_ids)
        if config.do_sample:
            probs = sampling_logits(allowed, config.temperature, config.top_k, config.top_p).softmax(dim=-1)
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            tokens = allowed.argmax(dim=-1)

        if sums is None:
            sums = torch.zeros(rows, dtype=logprobs.dtype, device=prompt.device)
        sequences[active, position] = tokens
        lengths[active] = step + 1
        sums[active] += logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)

        finished = torch.isin(tokens, eos)
        if step == max_new_tokens - 1:
            finished = torch.ones_like(finished)
        if streamer is not None:
            new_ids = torch.full((rows,), pad, dtype=tokens.dtype, device=tokens.device)
            new_ids[active] = tokens
            done = torch.ones(rows, dtype=torch.bool, device=tokens.device)
            done[active] = finished
            streamer.put(new_ids, done)
        if bool(finished.all()):
            break
        if bool(finished.any()):
            keep = (~finished).nonzero().squeeze(1)
            cache = model.reorder_cache(cache, keep)
            active, tokens = active[keep], tokens[keep]

    if streamer is not None:
        streamer.end()
    assert sums is not None  # max_new_tokens >= 1 is validated by the config
    width = prompt_len + int(lengths.max())
    return GenerationOutput(sequences=sequences[:, :width], scores=sums, lengths=lengths)
