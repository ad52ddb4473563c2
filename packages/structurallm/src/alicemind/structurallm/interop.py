"""StructuralLM for other tools: transformers' Auto classes (model_type ``structurallm``) and ``alicemind export``.
Data only; :mod:`alicemind.core.interop` does the work."""

from alicemind.core.interop import FamilySpec
from alicemind.structurallm.config import StructuralLMConfig
from alicemind.structurallm.model import (
    StructuralLMForPreTraining,
    StructuralLMForQuestionAnswering,
    StructuralLMForSequenceClassification,
    StructuralLMForTokenClassification,
    StructuralLMModel,
)

SPEC = FamilySpec(
    StructuralLMConfig,
    {
        "base": StructuralLMModel,
        "pretraining": StructuralLMForPreTraining,
        "sequence-classification": StructuralLMForSequenceClassification,
        "token-classification": StructuralLMForTokenClassification,
        "question-answering": StructuralLMForQuestionAnswering,
    },
)
