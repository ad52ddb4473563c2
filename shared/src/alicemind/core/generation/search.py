"""Greedy decoding and sampling, batched, with finished rows dropped from the work."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from alicemind.core.generation.config import GenerationConfig
from alicemind.core.generation.output import GenerationOutput
from alicemind.core.generation.processors import StepScores, sampling_logits, step_scores
from alicemind.core.generation.protocol import EncoderDecoderLM, Streamer


def _next_tokens(scores: StepScores, config: GenerationConfig, generator: torch.Generator | None) -> Tensor:
    """The most likely allowed token of each row, or a draw from the filtered distribution.

    A row whose every token is banned (n-gram blocking can do that) gets EOS, so it ends instead of failing.
    """
    best, tokens = scores.allowed.max(dim=-1)
    # Masking rows that are not dead changes nothing, so no host sync asks whether any row is dead.
    dead = torch.isneginf(best)
    if config.do_sample:
        logits = scores.allowed.masked_fill(dead.unsqueeze(1), 0.0)
        probs = sampling_logits(logits, config.temperature, config.top_k, config.top_p).softmax(dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    if config.eos_ids:
        tokens = tokens.masked_fill(dead, config.eos_ids[0])
    return tokens


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
        scores = step_scores(logits, history, config, step)
        tokens = _next_tokens(scores, config, generator)
        if sums is None:
            sums = torch.zeros(rows, dtype=scores.log_norm.dtype, device=prompt.device)
        sequences[active, position] = tokens
        lengths[active] = step + 1
        sums[active] += scores.logprobs_of(tokens)

        finished = torch.isin(tokens, eos)
        if step == max_new_tokens - 1:
            finished = torch.ones_like(finished)
        if streamer is not None:
            new_ids = torch.full((rows,), pad, dtype=tokens.dtype, device=tokens.device)
            new_ids[active] = tokens
            done = torch.ones(rows, dtype=torch.bool, device=tokens.device)
            done[active] = finished
            streamer.put(new_ids, done)
        done_rows = int(finished.sum())  # the one host sync of a step: the stop check
        if done_rows == finished.numel():
            break
        if done_rows:
            keep = (~finished).nonzero().squeeze(1)
            cache = model.reorder_cache(cache, keep)
            active, tokens = active[keep], tokens[keep]

    if streamer is not None:
        streamer.end()
    assert sums is not None  # max_new_tokens >= 1 is validated by the config
    width = prompt_len + int(lengths.max())
    return GenerationOutput(sequences=sequences[:, :width], scores=sums, lengths=lengths)


def static_greedy_or_sample(
    model: EncoderDecoderLM,
    cache: Any,
    prompt: Tensor,
    config: GenerationConfig,
    max_new_tokens: int,
    *,
    streamer: Streamer | None = None,
    generator: torch.Generator | None = None,
) -> GenerationOutput:
    """:func:`greedy_or_sample` over a static cache: every row runs every step, so each step has the same shapes.

    Finished rows keep running (their tokens are replaced by the pad id and their scores stop counting) instead
    of leaving the batch, so the decode step is one compiled graph for all steps; the stop check is the step's
    one host sync. The outputs equal :func:`greedy_or_sample`'s: greedy rows do not depend on each other, and
    sampling draws only for the rows still going, in the same order, once a row has finished.
    """
    batch, prompt_len = prompt.shape
    copies = config.num_return_sequences
    rows = batch * copies
    device = prompt.device
    pad = config.resolve_pad_token_id()
    eos = torch.tensor(config.eos_ids, dtype=prompt.dtype, device=device)
    needs_history = config.no_repeat_ngram_size > 0 or config.repetition_penalty != 1.0

    sequences = prompt.new_full((rows, prompt_len + max_new_tokens), pad)
    sequences[:, :prompt_len] = prompt.repeat_interleave(copies, dim=0)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)

    logits = model.decode_step(prompt, cache)[:, -1]
    if copies > 1:
        expand = torch.arange(batch, device=device).repeat_interleave(copies)
        cache = model.reorder_cache(cache, expand)
        logits = logits[expand]

    sums: Tensor | None = None
    tokens = prompt[:, -1]
    going: Tensor | None = None  # indices of the unfinished rows, once some row has finished (sampling only)
    for step in range(max_new_tokens):
        if step > 0:
            logits = model.decode_step(tokens.unsqueeze(1), cache)[:, -1]
        position = prompt_len + step
        history = sequences[:, :position] if needs_history else None
        scores = step_scores(logits, history, config, step)
        if config.do_sample and going is not None:
            # The dynamic path draws for the unfinished rows only; drawing for the same rows keeps the draws equal.
            picked = _next_tokens(StepScores(*(t[going] for t in scores)), config, generator)
            tokens = torch.full((rows,), pad, dtype=picked.dtype, device=device).index_copy_(0, going, picked)
        else:
            tokens = _next_tokens(scores, config, generator)
        tokens = tokens.masked_fill(finished, pad)
        if sums is None:
            sums = torch.zeros(rows, dtype=scores.log_norm.dtype, device=device)
        sequences[:, position] = tokens
        lengths += ~finished
        sums += scores.logprobs_of(tokens).masked_fill(finished, 0.0)
        newly = torch.isin(tokens, eos) & ~finished
        finished = finished | newly
        if step == max_new_tokens - 1:
            finished = torch.ones_like(finished)
        if streamer is not None:
            streamer.put(tokens, finished)
        done_rows = int(finished.sum())  # the one host sync of a step: the stop check
        if done_rows == rows:
            break
        if config.do_sample and done_rows and (going is None or going.numel() != rows - done_rows):
            going = (~finished).nonzero().squeeze(1)

    if streamer is not None:
        streamer.end()
    assert sums is not None  # max_new_tokens >= 1 is validated by the config
    width = prompt_len + int(lengths.max())
    return GenerationOutput(sequences=sequences[:, :width], scores=sums, lengths=lengths)
