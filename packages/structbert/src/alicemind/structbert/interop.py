"""StructBERT for other tools. Its folders say model_type ``bert`` and hold BERT's keys, so transformers' own BERT
classes load them (nothing is registered there); ``alicemind export onnx`` reads this. Data only."""

from alicemind.core.interop import FamilySpec
from alicemind.structbert.config import StructBertConfig
from alicemind.structbert.model import (
    StructBertForMaskedLM,
    StructBertForMultipleChoice,
    StructBertForPreTraining,
    StructBertForQuestionAnswering,
    StructBertForSequenceClassification,
    StructBertForTokenClassification,
    StructBertModel,
)

SPEC = FamilySpec(
    StructBertConfig,
    {
        "base": StructBertModel,
        "pretraining": StructBertForPreTraining,
        "masked-lm": StructBertForMaskedLM,
        "sequence-classification": StructBertForSequenceClassification,
        "token-classification": StructBertForTokenClassification,
        "question-answering": StructBertForQuestionAnswering,
        "multiple-choice": StructBertForMultipleChoice,
    },
    peer="bert",
)
