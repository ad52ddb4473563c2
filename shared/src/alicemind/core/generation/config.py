"""Decoding settings and the length penalty used to rank beam hypotheses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor

DEFAULT_MAX_NEW_TOKENS = 20


@dataclass
class GenerationConfig:
    """How :func:`generate` decodes. Lengths count decoder tokens; the source length never matters.

    Length limits:
        max_new_tokens: most tokens to generate (EOS included). Wins over ``max_length`` when both are set.
        max_length: most decoder tokens in total, decoder prompt (start token) included.
            With neither set, ``max_new_tokens`` is 20.
        min_length: EOS cannot be any of the first ``min_length`` generated tokens, so every output has at
            least ``min_length`` generated tokens before its EOS (PreSumm's and mPLUG's ``min_length``).
    Special tokens:
        decoder_start_token_id: first decoder token when no ``decoder_input_ids`` prompt is given
            (falls back to ``bos_token_id``).
        eos_token_id: one id or several; a row stops when it produces any of them. ``None``: run to the limit.
        pad_token_id: fills rows after they finished (falls back to the first EOS id, then 0).
    Search:
        do_sample, temperature, top_k (0 = off), top_p (1.0 = off): sampling; greedy when ``do_sample`` is
            False and ``num_beams`` is 1.
        num_beams: beam width; > 1 selects beam search (log-probabilities in fp32, no sampling).
        length_penalty, length_penalty_style: a finished hypothesis of ``n`` generated tokens (EOS included)
            is ranked by ``sum_logprob / lp(n)`` with ``lp(n) = ((5 + n) / 6) ** alpha`` for ``"gnmt"``
            (Wu et al. 2016, PALM/mPLUG) or ``n ** alpha`` for ``"plain"`` (fairseq, Hugging Face).
            ``alpha = 0`` ranks by the raw sum.
        early_stopping: when a beam-search row stops before the length limit.
            True: as soon as it holds ``num_beams`` finished hypotheses.
            False: once it holds ``num_beams`` finished hypotheses AND no live beam can still beat the worst of
            them: a live beam's sum of log-probs can only fall, so its best reachable score is
            ``sum / max(lp(n + 1), lp(max_new_tokens))`` (the shortest or longest completion, whichever the
            penalty favours); the row stops when that bound of its best live beam is <= its worst finished score.
            Either way a row also stops when no live beam has a finite score left. At the length limit the
            live beams join the finished hypotheses (without EOS) and the best ones are returned.
            Only read when ``beam_stopping`` is ``"num_beams"``.
        beam_stopping: the rule that ends a beam-search row.
            ``"num_beams"`` (default): the ``early_stopping`` rules above (Hugging Face's).
            ``"top_beam"``: the row stops at the first step whose best candidate (the top-scored extension of
            all its beams) is EOS, and its best finished hypothesis so far is returned: the rule of PreSumm's
            translator that PALM uses (PALM/models/predictor.py, ``_fast_translate_batch``: "End condition is
            top beam is finished"; sofa's examples/finetune/generation.py has the same). Such a row may hold
            fewer than ``num_return_sequences`` finished hypotheses: empty slots have score -inf and length 0.
        num_return_sequences: outputs per source row (<= num_beams in beam search; needs sampling otherwise).
        no_repeat_ngram_size: > 0 bans any token that would repeat an n-gram of the decoder sequence so far
            (decoder prompt included).
        repetition_penalty: CTRL penalty on the logits of tokens already in the decoder sequence
            (positive logits divided by it, negative ones multiplied); 1.0 = off.
    """

    max_new_tokens: int | None = None
    max_length: int | None = None
    min_length: int = 0
    decoder_start_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | Sequence[int] | None = None
    pad_token_id: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    length_penalty_style: Literal["gnmt", "plain"] = "gnmt"
    early_stopping: bool = True
    beam_stopping: Literal["num_beams", "top_beam"] = "num_beams"
    num_return_sequences: int = 1
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_length is not None and self.max_length < 2:
            problems.append(f"max_length must be >= 2 (prompt + one token), got {self.max_length}")
        if self.min_length < 0:
            problems.append(f"min_length must be >= 0, got {self.min_length}")
        if self.temperature <= 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.num_beams < 1:
            problems.append(f"num_beams must be >= 1, got {self.num_beams}")
        if self.length_penalty_style not in ("gnmt", "plain"):
            problems.append(f"length_penalty_style must be 'gnmt' or 'plain', got {self.length_penalty_style!r}")
        if self.beam_stopping not in ("num_beams", "top_beam"):
            problems.append(f"beam_stopping must be 'num_beams' or 'top_beam', got {self.beam_stopping!r}")
        if self.num_return_sequences < 1:
            problems.append(f"num_return_sequences must be >= 1, got {self.num_return_sequences}")
        if self.no_repeat_ngram_size < 0:
            problems.append(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.do_sample and self.num_beams > 1:
            problems.append("beam sampling is not supported: set do_sample=False or num_beams=1")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            problems.append(
                f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams})"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            problems.append("greedy decoding returns one sequence per row: use do_sample=True or num_beams > 1")
        if problems:
            raise ValueError("invalid GenerationConfig: " + "; ".join(problems))

    @property
    def eos_ids(self) -> list[int]:
        """The EOS ids as a list (empty when there is none)."""
        if self.eos_token_id is None:
            return []
        if isinstance(self.eos_token_id, int):
            return [self.eos_token_id]
        return [int(i) for i in self.eos_token_id]

    def resolve_max_new_tokens(self, prompt_length: int) -> int:
        """How many tokens to generate after a decoder prompt of ``prompt_length`` tokens."""
        if self.max_new_tokens is not None:
            budget = self.max_new_tokens
        elif self.max_length is not None:
            budget = self.max_length - prompt_length
        else:
            budget = DEFAULT_MAX_NEW_TOKENS
        if budget < 1:
            raise ValueError(
                f"max_length={self.max_length} leaves no room to generate after a decoder prompt of "
                f"{prompt_length} tokens"
            )
        if self.min_length > budget:
            raise ValueError(f"min_length={self.min_length} exceeds the {budget} tokens that may be generated")
        return budget

    def resolve_pad_token_id(self) -> int:
        """The id written after a row's end: pad, else the first EOS, else 0."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        eos = self.eos_ids
        return eos[0] if eos else 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        out = asdict(self)
        if isinstance(out["eos_token_id"], tuple):
            out["eos_token_id"] = list(out["eos_token_id"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        """Build from a dict such as :meth:`to_dict` writes; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GenerationConfig fields: {unknown}; known fields: {sorted(known)}")
        return cls(**data)


def length_penalty(length: Tensor | int, alpha: float, style: str = "gnmt") -> Tensor:
    """The divisor ``lp(length)`` of a hypothesis' summed log-prob: GNMT ``((5+n)/6)**alpha`` or ``n**alpha``."""
    n = torch.as_tensor(length, dtype=torch.float32)
    if style == "gnmt":
        return ((5.0 + n) / 6.0) ** alpha
    if style == "plain":
        return n**alpha
    raise ValueError(f"length_penalty_style must be 'gnmt' or 'plain', got {style!r}")
