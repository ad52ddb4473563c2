"""Evaluation metrics: classification, correlation, span F1, SQuAD, BLEU and ROUGE (fractions in [0, 1])."""

from alicemind.core.metrics.classification import (
    accuracy,
    f1,
    glue_metrics,
    matthews_corrcoef,
    pearson,
    rankdata,
    spearman,
)
from alicemind.core.metrics.generation import corpus_bleu, ngram_bleu, rouge
from alicemind.core.metrics.spans import (
    best_span,
    exact_match,
    get_entities,
    normalize_answer,
    span_f1,
    squad_f1,
    squad_metrics,
)

__all__ = [
    "accuracy",
    "best_span",
    "corpus_bleu",
    "exact_match",
    "f1",
    "get_entities",
    "glue_metrics",
    "matthews_corrcoef",
    "ngram_bleu",
    "normalize_answer",
    "pearson",
    "rankdata",
    "rouge",
    "span_f1",
    "spearman",
    "squad_f1",
    "squad_metrics",
]
