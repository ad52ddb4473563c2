"""StructVBERT for other tools: transformers' Auto classes (model_type ``structvbert``) and ``alicemind export``.
Data only; :mod:`alicemind.core.interop` does the work."""

from alicemind.core.interop import FamilySpec
from alicemind.structvbert.config import StructVBertConfig
from alicemind.structvbert.model import (
    StructVBertForPreTraining,
    StructVBertForVQA,
    StructVBertModel,
)

SPEC = FamilySpec(
    StructVBertConfig,
    {
        "base": StructVBertModel,
        "pretraining": StructVBertForPreTraining,
        "visual-question-answering": StructVBertForVQA,
    },
)
