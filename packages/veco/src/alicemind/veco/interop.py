"""VECO for other tools. Its NLU folders say model_type ``xlm-roberta`` and hold XLM-R's keys, so transformers' own
XLM-R classes load them (nothing is registered there); ``alicemind export onnx`` reads this (the NLG model too). Data only."""

from alicemind.core.interop import FamilySpec
from alicemind.veco.config import VecoConfig
from alicemind.veco.model import (
    VecoForMultipleChoice,
    VecoForQuestionAnswering,
    VecoForSequenceClassification,
    VecoForTokenClassification,
    VecoModel,
)
from alicemind.veco.pretraining import VecoForPreTraining
from alicemind.veco.seq2seq import VecoForConditionalGeneration

SPEC = FamilySpec(
    VecoConfig,
    {
        "base": VecoModel,
        "pretraining": VecoForPreTraining,
        "sequence-classification": VecoForSequenceClassification,
        "token-classification": VecoForTokenClassification,
        "question-answering": VecoForQuestionAnswering,
        "multiple-choice": VecoForMultipleChoice,
        "seq2seq-lm": VecoForConditionalGeneration,
    },
    peer="xlm-roberta",
)
