"""Text generation metrics: BLEU (sacrebleu, plus a self-contained BLEU-1..4) and ROUGE (rouge-score).

Scores are fractions in [0, 1]; multiply by 100 for the usual tables.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

_NLG_HINT = "pip install 'alicemind-core[nlg]'"


def _require(module: str, metric: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{metric} needs the {module} package, which is not installed: {_NLG_HINT}") from e


def _as_reference_sets(references: Sequence[str] | Sequence[Sequence[str]], n: int) -> list[list[str]]:
    if len(references) != n:
        raise ValueError(f"{n} hypotheses but {len(references)} references")
    return [[r] if isinstance(r, str) else list(r) for r in references]


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenize: str = "13a",
    lowercase: bool = False,
) -> float:
    """Corpus BLEU-4 computed by sacrebleu (``tokenize``: ``13a``, ``intl``, ``zh``, ``char``, ...).

    ``references[i]`` is the reference of hypothesis ``i``, or a list of its references.
    """
    sacrebleu = _require("sacrebleu", "BLEU")
    sets = _as_reference_sets(references, len(hypotheses))
    width = max(len(s) for s in sets) if sets else 1
    # sacrebleu wants one stream per reference position; a missing extra reference is passed as None.
    streams = [[s[k] if k < len(s) else None for s in sets] for k in range(width)]
    result = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase).corpus_score(list(hypotheses), streams)
    return result.score / 100.0


def _tokens(text: str, tokenize: str) -> list[str]:
    if tokenize == "char":
        return [ch for ch in text if not ch.isspace()]
    if tokenize == "whitespace":
        return text.split()
    raise ValueError(f"unknown tokenize {tokenize!r}; expected 'char' or 'whitespace'")


def ngram_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    max_order: int = 4,
    tokenize: str = "char",
) -> dict[str, float]:
    """Corpus BLEU-1..``max_order`` without smoothing, as DuReader/MS MARCO-style evaluation reports it.

    BLEU-n is the brevity penalty times the geometric mean of the clipped 1..n-gram precisions; the reference
    length is, per hypothesis, the closest reference length (the shorter on a tie). ``tokenize="char"`` treats every
    non-space character as a token (Chinese), ``"whitespace"`` splits on spaces. Pure Python, no extra package.
    """
    sets = _as_reference_sets(references, len(hypotheses))
    matches, totals = [0] * max_order, [0] * max_order
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, sets):
        h = _tokens(hyp, tokenize)
        rs = [_tokens(r, tokenize) for r in refs]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_order + 1):
            counts = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            best: Counter = Counter()
            for r in rs:
                best |= Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum((counts & best).values())
            totals[n - 1] += max(len(h) - n + 1, 0)
    penalty = 0.0 if hyp_len == 0 else min(1.0, math.exp(1 - ref_len / hyp_len))
    scores, log_sum = {}, 0.0
    for n in range(1, max_order + 1):
        if matches[n - 1] == 0 or log_sum == -math.inf:
            log_sum = -math.inf
        else:
            log_sum += math.log(matches[n - 1] / totals[n - 1])
        scores[f"bleu-{n}"] = 0.0 if log_sum == -math.inf else penalty * math.exp(log_sum / n)
    return scores


class _CharTokenizer:
    """rouge-score tokenizer for Chinese: its default one keeps only ASCII letters and digits."""

    def tokenize(self, text: str) -> list[str]:
        return [ch for ch in text.lower() if not ch.isspace()]


def rouge(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    rouge_types: Sequence[str] = ("rouge1", "rouge2", "rougeL"),
    lang: str = "en",
    use_stemmer: bool = False,
) -> dict[str, float]:
    """Mean ROUGE F-measure per type, computed by rouge-score (multiple references: best one per example).

    ``lang="zh"`` scores characters (rouge-score's own tokenizer would drop every non-ASCII character).
    """
    rouge_scorer = _require("rouge_score.rouge_scorer", "ROUGE")
    if lang not in ("en", "zh"):
        raise ValueError(f"unknown lang {lang!r}; expected 'en' or 'zh'")
    sets = _as_reference_sets(references, len(predictions))
    if not sets:
        raise ValueError("cannot compute ROUGE over zero examples")
    tokenizer = _CharTokenizer() if lang == "zh" else None
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer, tokenizer=tokenizer)
    totals = dict.fromkeys(rouge_types, 0.0)
    for prediction, refs in zip(predictions, sets):
        scores = scorer.score_multi(refs, prediction)
        for kind in rouge_types:
            totals[kind] += scores[kind].fmeasure
    return {kind: total / len(sets) for kind, total in totals.items()}
