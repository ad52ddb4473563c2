"""VECO (Variable Encoder-decoder pre-training for cross-lingual understanding and generation): the XLM-R-shaped
encoder with every task head, the fairseq encoder-decoder, CA-MLM pre-training with the plug-in cross-attention,
converters for both releases and the XTREME / WMT14 recipes."""

from alicemind.core.interop import register_family as _register_family
from alicemind.veco import hub as _hub  # noqa: F401  (registers veco.large / veco.large.nlg)
from alicemind.veco.config import VecoConfig
from alicemind.veco.interop import SPEC as _SPEC
from alicemind.veco.model import (
    VecoForMultipleChoice,
    VecoForQuestionAnswering,
    VecoForSequenceClassification,
    VecoForTokenClassification,
    VecoModel,
)
from alicemind.veco.pretraining import VecoForPreTraining, init_nlg_from_pretraining
from alicemind.veco.seq2seq import VecoForConditionalGeneration
from alicemind.veco.tokenization import VecoTokenizer
from alicemind.veco.version import __version__

_register_family(_SPEC)  # `alicemind export onnx` (transformers' XLM-R classes load the NLU folders as they are)

__all__ = [
    "VecoConfig",
    "VecoForConditionalGeneration",
    "VecoForMultipleChoice",
    "VecoForPreTraining",
    "VecoForQuestionAnswering",
    "VecoForSequenceClassification",
    "VecoForTokenClassification",
    "VecoModel",
    "VecoTokenizer",
    "__version__",
    "init_nlg_from_pretraining",
]
