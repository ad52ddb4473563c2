"""StructBERT (Wang et al., 2019): BERT with word- and sentence-structure pre-training objectives."""

from alicemind.core.interop import register_family as _register_family
from alicemind.structbert.config import StructBertConfig
from alicemind.structbert.interop import SPEC as _SPEC
from alicemind.structbert.model import (
    EncoderOutput,
    StructBertForMaskedLM,
    StructBertForMultipleChoice,
    StructBertForPreTraining,
    StructBertForQuestionAnswering,
    StructBertForSequenceClassification,
    StructBertForTokenClassification,
    StructBertModel,
    TaskOutput,
)
from alicemind.structbert.version import __version__

_register_family(_SPEC)  # `alicemind export onnx` (transformers' BERT classes load the folders as they are)

__all__ = [
    "EncoderOutput",
    "StructBertConfig",
    "StructBertForMaskedLM",
    "StructBertForMultipleChoice",
    "StructBertForPreTraining",
    "StructBertForQuestionAnswering",
    "StructBertForSequenceClassification",
    "StructBertForTokenClassification",
    "StructBertModel",
    "StructBertTokenizer",
    "TaskOutput",
    "__version__",
]


def __getattr__(name: str):
    # The tokenizer pulls in the tokenizers library; import it on first use only.
    if name == "StructBertTokenizer":
        from alicemind.structbert.tokenization import StructBertTokenizer

        return StructBertTokenizer
    raise AttributeError(f"module 'alicemind.structbert' has no attribute {name!r}")
