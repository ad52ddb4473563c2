"""LatticeBERT for other tools: transformers' Auto classes (model_type ``latticebert``) and ``alicemind export``.
Data only; :mod:`alicemind.core.interop` does the work."""

from alicemind.core.interop import FamilySpec
from alicemind.latticebert.config import LatticeBertConfig
from alicemind.latticebert.model import (
    LatticeBertForPreTraining,
    LatticeBertForQuestionAnswering,
    LatticeBertForSequenceClassification,
    LatticeBertForTokenClassification,
    LatticeBertModel,
)

SPEC = FamilySpec(
    LatticeBertConfig,
    {
        "base": LatticeBertModel,
        "pretraining": LatticeBertForPreTraining,
        "sequence-classification": LatticeBertForSequenceClassification,
        "token-classification": LatticeBertForTokenClassification,
        "question-answering": LatticeBertForQuestionAnswering,
    },
)
