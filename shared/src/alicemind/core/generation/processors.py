"""Vectorised edits of next-token scores: bans, penalties and sampling filters.

Every function takes scores ``[N, V]`` (one row per live sequence) and works on whole tensors: no Python loop
over rows, tokens or the vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from alicemind.core.generation.config import GenerationConfig

NEG_INF = float("-inf")


def apply_repetition_penalty(logits: Tensor, history: Tensor, penalty: float) -> Tensor:
    """CTRL repetition penalty: for each token in ``history`` ``[N, T]``, shrink its logit by ``penalty``.

    Positive logits are divided and negative ones multiplied, so the token always becomes less likely.
    """
    if penalty == 1.0 or history.shape[1] == 0:
        return logits
    seen = logits.gather(1, history)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    # A token repeated in history scatters the same value several times, so the write order does not matter.
    return logits.scatter(1, history, seen)


def no_repeat_ngram_mask(history: Tensor, n: int, vocab_size: int) -> Tensor:
    """Bool ``[N, V]``: True where emitting the token next would repeat an ``n``-gram already in ``history``.

    Every complete n-gram of ``history`` ``[N, T]`` whose first ``n - 1`` tokens equal the last ``n - 1`` tokens
    of its row bans its last token. All windows of all rows are compared at once (``unfold``), so a step costs
    ``O(N * T * n)`` tensor work and no Python loop.
    """
    rows, length = history.shape
    banned = torch.zeros(rows, vocab_size, dtype=torch.bool, device=history.device)
    if n < 1 or length < n:
        return banned
    windows = history.unfold(1, n, 1)  # [N, T - n + 1, n]
    suffix = history[:, length - n + 1 :]  # the n - 1 tokens an n-gram ending at the next position starts with
    matches = (windows[:, :, :-1] == suffix.unsqueeze(1)).all(-1)  # [N, W]
    # scatter_add (not scatter) because a token can close both matching and non-matching windows.
    counts = torch.zeros(rows, vocab_size, dtype=torch.int32, device=history.device)
    counts.scatter_add_(1, windows[:, :, -1], matches.to(torch.int32))
    return counts > 0


def ban_tokens(scores: Tensor, token_ids: list[int]) -> Tensor:
    """Set the scores of ``token_ids`` to -inf in every row (e.g. EOS before ``min_length``)."""
    if not token_ids:
        return scores
    scores = scores.clone()
    scores[:, token_ids] = NEG_INF
    return scores


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row (ties with the k-th are kept); ``k = 0`` keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability mass reaches ``p``.

    A token is kept when the mass of the tokens ranked above it is still below ``p``, so the top token always
    survives; ``p = 1`` keeps all.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def sampling_logits(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Temperature, then top-k, then top-p: the logits a sampler draws from."""
    if temperature != 1.0:
        logits = logits / temperature
    return top_p_filter(top_k_filter(logits, top_k), top_p)


class StepScores(NamedTuple):
    """One decoding step's scores ``[N, V]``.

    ``logits`` are the model's (after the repetition penalty, which changes its distribution), ``allowed`` the
    same with banned tokens at -inf, and ``log_norm`` ``[N]`` their log-partition, so a token's model
    log-probability is ``logits[t] - log_norm``. Keeping the normaliser apart, rather than a log-softmaxed copy,
    saves a full pass over the vocabulary at every step.
    """

    logits: Tensor
    allowed: Tensor
    log_norm: Tensor

    def logprobs_of(self, tokens: Tensor) -> Tensor:
        """Model log-probabilities ``[N]`` of ``tokens`` ``[N]``."""
        return self.logits.gather(1, tokens.unsqueeze(1)).squeeze(1) - self.log_norm


def step_scores(logits: Tensor, history: Tensor | None, config: GenerationConfig, generated: int) -> StepScores:
    """Apply the config's penalties and bans to one step's logits ``[N, V]`` (see :class:`StepScores`).

    ``history`` ``[N, T]`` is the decoder sequence so far (needed only for the repetition penalty and n-gram
    blocking); ``generated`` counts the tokens generated before this step. Bans are EOS before ``min_length``
    and repeated n-grams. Scores are computed in at least fp32.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if config.repetition_penalty != 1.0 and history is not None:
        logits = apply_repetition_penalty(logits, history, config.repetition_penalty)
    log_norm = torch.logsumexp(logits, dim=-1)
    allowed = logits
    if generated < config.min_length:
        allowed = ban_tokens(allowed, config.eos_ids)
    if config.no_repeat_ngram_size > 0 and history is not None:
        allowed = allowed.masked_fill(
            no_repeat_ngram_mask(history, config.no_repeat_ngram_size, logits.shape[-1]), NEG_INF
        )
    return StepScores(logits, allowed, log_norm)
