"""StructuralLM (Li et al., 2021): a cell-level layout language model for form understanding, document QA and
document classification."""

from alicemind.core.interop import register_family as _register_family
from alicemind.structurallm.config import StructuralLMConfig
from alicemind.structurallm.documents import Document, DocumentError, make_document, read_documents, read_funsd
from alicemind.structurallm.interop import SPEC as _SPEC
from alicemind.structurallm.model import (
    EncoderOutput,
    StructuralLMForPreTraining,
    StructuralLMForQuestionAnswering,
    StructuralLMForSequenceClassification,
    StructuralLMForTokenClassification,
    StructuralLMModel,
    TaskOutput,
)
from alicemind.structurallm.version import __version__

_register_family(_SPEC)  # transformers' Auto classes (once transformers is imported) and `alicemind export`

__all__ = [
    "Document",
    "DocumentEncoder",
    "DocumentError",
    "EncoderOutput",
    "StructuralLMConfig",
    "StructuralLMForPreTraining",
    "StructuralLMForQuestionAnswering",
    "StructuralLMForSequenceClassification",
    "StructuralLMForTokenClassification",
    "StructuralLMModel",
    "StructuralLMTokenizer",
    "TaskOutput",
    "__version__",
    "make_document",
    "read_documents",
    "read_funsd",
]


def __getattr__(name: str):
    # The tokenizer (and the encoder over it) pull in the tokenizers library; import them on first use only.
    if name == "StructuralLMTokenizer":
        from alicemind.structurallm.tokenization import StructuralLMTokenizer

        return StructuralLMTokenizer
    if name == "DocumentEncoder":
        from alicemind.structurallm.encoder import DocumentEncoder

        return DocumentEncoder
    raise AttributeError(f"module 'alicemind.structurallm' has no attribute {name!r}")
