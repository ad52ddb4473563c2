"""Batched beam search in log-probability space, with finished source rows dropped from the work."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from alicemind.core.generation.config import GenerationConfig, length_penalty
from alicemind.core.generation.output import GenerationOutput
from alicemind.core.generation.processors import step_scores
from alicemind.core.generation.protocol import EncoderDecoderLM

NEG_INF = float("-inf")


class _Hypotheses:
    """The ``num_beams`` best finished hypotheses of every source row, kept as tensors.

    ``scores`` are length-penalised, ``sums`` raw summed log-probs, ``lengths`` generated tokens; empty slots
    hold -inf and the bare prompt.
    """

    def __init__(self, prompt_rows: Tensor, num_beams: int, dtype: torch.dtype, config: GenerationConfig) -> None:
        batch, width = prompt_rows.shape
        device = prompt_rows.device
        self.config = config
        self.scores = torch.full((batch, num_beams), NEG_INF, dtype=dtype, device=device)
        self.sums = self.scores.clone()
        self.lengths = torch.zeros(batch, num_beams, dtype=torch.long, device=device)
        self.tokens = prompt_rows.unsqueeze(1).expand(batch, num_beams, width).clone()

    def _lp(self, length: int) -> float:
        return float(length_penalty(length, self.config.length_penalty, self.config.length_penalty_style))

    def add(self, rows: Tensor, sums: Tensor, tokens: Tensor, length: int) -> None:
        """Merge candidates ``sums`` ``[r, c]`` / ``tokens`` ``[r, c, W]`` (-inf = not a candidate) into ``rows``."""
        num_beams = self.scores.shape[1]
        pooled_scores = torch.cat([self.scores[rows], sums / self._lp(length)], dim=1)
        best, pick = pooled_scores.topk(num_beams, dim=1)
        pooled_sums = torch.cat([self.sums[rows], sums], dim=1)
        pooled_lengths = torch.cat([self.lengths[rows], torch.full_like(sums, length, dtype=torch.long)], dim=1)
        pooled_tokens = torch.cat([self.tokens[rows], tokens], dim=1)
        self.scores[rows] = best
        self.sums[rows] = pooled_sums.gather(1, pick)
        self.lengths[rows] = pooled_lengths.gather(1, pick)
        self.tokens[rows] = pooled_tokens.gather(1, pick.unsqueeze(-1).expand(-1, -1, pooled_tokens.shape[-1]))

    def done(self, rows: Tensor, live_sums: Tensor, length: int, max_new_tokens: int) -> Tensor:
        """Bool ``[r]``: rows whose search can stop now (see ``GenerationConfig.early_stopping``)."""
        scores = self.scores[rows]
        full = torch.isfinite(scores).all(dim=1)
        exhausted = torch.isneginf(live_sums).all(dim=1)
        if self.config.early_stopping:
            return full | exhausted
        # A live sum can only fall, so its best final score uses the largest penalty divisor it can still reach.
        divisor = max(self._lp(length + 1), self._lp(max_new_tokens))
        bound = live_sums.max(dim=1).values / divisor
        return (full & (bound <= scores.min(dim=1).values)) | exhausted

    def best(self, count: int, prompt_len: int) -> GenerationOutput:
        """The ``count`` best hypotheses of every row, best first, as a flat batch."""
        top, pick = self.scores.topk(count, dim=1)
        width = self.tokens.shape[-1]
        tokens = self.tokens.gather(1, pick.unsqueeze(-1).expand(-1, -1, width)).flatten(0, 1)
        lengths = self.lengths.gather(1, pick).flatten()
        used = prompt_len + int(lengths.max())
        return GenerationOutput(
            sequences=tokens[:, :used],
            scores=self.sums.gather(1, pick).flatten(),
            lengths=lengths,
            sequence_scores=top.flatten(),
        )


def beam_search(
    model: EncoderDecoderLM,
    cache: Any,
    prompt: Tensor,
    config: GenerationConfig,
    max_new_tokens: int,
    *,
    static: bool = False,
) -> GenerationOutput:
    """Beam search from a fresh ``cache`` for the decoder ``prompt`` ``[B, P]``.

    Each step ranks every (beam, token) extension of a row by summed log-prob and keeps the top
    ``num_beams * (1 + #eos)`` candidates. EOS candidates among the first ``num_beams`` become finished
    hypotheses (scored ``sum / lp(length)``); the best ``num_beams`` non-EOS candidates are the next beams.
    A source row leaves the active batch when ``_Hypotheses.done`` says so, or, with
    ``beam_stopping="top_beam"``, as soon as its best candidate is EOS (PreSumm's and PALM's rule).

    ``static=True`` (a static cache): a stopped source stays in the batch, its beams still run but no longer
    change its hypotheses, so every step after the first has the same shapes (one compiled decode graph) and
    the cache is reordered only within each source's beams. The results equal the default path's.
    """
    batch, prompt_len = prompt.shape
    beams = config.num_beams
    width = prompt_len + max_new_tokens
    device = prompt.device
    eos_ids = config.eos_ids
    eos = torch.tensor(eos_ids, dtype=prompt.dtype, device=device)
    needs_history = config.no_repeat_ngram_size > 0 or config.repetition_penalty != 1.0

    # The prompt runs once per source row; only then is the cache copied to the beams.
    logits = model.decode_step(prompt, cache)[:, -1]
    expand = torch.arange(batch, device=device).repeat_interleave(beams)
    cache = model.reorder_cache(cache, expand)
    logits = logits[expand]
    history_rows = prompt.new_full((batch * beams, width), config.resolve_pad_token_id())
    history_rows[:, :prompt_len] = prompt[expand]

    active = torch.arange(batch, device=device)
    stopped = torch.zeros(batch, dtype=torch.bool, device=device)  # static only: sources that are done
    hyps: _Hypotheses | None = None
    beam_sums: Tensor | None = None
    tokens = prompt[expand, -1].view(batch, beams)
    for step in range(max_new_tokens):
        if step > 0:
            logits = model.decode_step(tokens.reshape(-1, 1), cache)[:, -1]
        position, length = prompt_len + step, step + 1
        history = history_rows[:, :position] if needs_history else None
        scores = step_scores(logits, history, config, step)
        if hyps is None or beam_sums is None:
            hyps = _Hypotheses(history_rows[::beams], beams, scores.log_norm.dtype, config)
            # All beams start identical: only the first may expand, or the top-k would hold duplicates.
            beam_sums = torch.zeros(batch, beams, dtype=scores.log_norm.dtype, device=device)
            beam_sums[:, 1:] = NEG_INF

        rows, vocab = active.numel(), scores.allowed.shape[-1]
        # sum + log-prob in one pass over the vocabulary; banned tokens stay -inf.
        offsets = (beam_sums.reshape(-1) - scores.log_norm).unsqueeze(1)
        candidates = (scores.allowed + offsets).view(rows, beams * vocab)
        top_sums, top_ids = candidates.topk(min(beams * (1 + len(eos_ids)), beams * vocab), dim=1)
        top_src = top_ids // vocab + torch.arange(rows, device=device).unsqueeze(1) * beams
        top_tokens = top_ids % vocab
        is_eos = torch.isin(top_tokens, eos)

        finished = is_eos[:, :beams] & torch.isfinite(top_sums[:, :beams])
        if static:
            finished &= ~stopped.unsqueeze(1)
        if bool(finished.any()):
            hit = finished.any(dim=1).nonzero().squeeze(1)
            ended = history_rows[top_src[hit, :beams].reshape(-1)].view(hit.numel(), beams, width)
            ended[:, :, position] = top_tokens[hit, :beams]
            hyps.add(active[hit], top_sums[hit, :beams].masked_fill(~finished[hit], NEG_INF), ended, length)

        # Stable sort on "is EOS" keeps the candidates' score order among the non-EOS ones.
        keep_order = is_eos.long().argsort(dim=1, stable=True)[:, :beams]
        beam_sums = top_sums.gather(1, keep_order)
        beam_src = top_src.gather(1, keep_order)
        tokens = top_tokens.gather(1, keep_order)

        if step == max_new_tokens - 1:
            live = history_rows[beam_src.reshape(-1)].view(rows, beams, width)
            live[:, :, position] = tokens
            if static:
                going = (~stopped).nonzero().squeeze(1)
                live, beam_sums, active = live[going], beam_sums[going], active[going]
            hyps.add(active, beam_sums, live, length)
            break
        if config.beam_stopping == "top_beam":
            # PALM/models/predictor.py stops a source when the top of its ranked candidates ends the sequence.
            done = finished[:, 0] | torch.isneginf(beam_sums).all(dim=1)
        else:
            done = hyps.done(active, beam_sums, length, max_new_tokens)
        if static:
            done = done | stopped
        if bool(done.all()):
            break
        if static:
            stopped = done
            index = beam_src.reshape(-1)
            history_rows = history_rows[index]
            history_rows[:, position] = tokens.reshape(-1)
            cache = model.reorder_cache(cache, index)
            continue
        going = (~done).nonzero().squeeze(1)
        index = beam_src[going].reshape(-1)
        history_rows = history_rows[index]
        history_rows[:, position] = tokens[going].reshape(-1)
        cache = model.reorder_cache(cache, index)
        beam_sums, tokens, active = beam_sums[going], tokens[going], active[going]

    assert hyps is not None  # max_new_tokens >= 1 is validated by the config
    return hyps.best(config.num_return_sequences, prompt_len)
