"""LatticeBERT (Lai et al., 2021): Chinese BERT over lattices of characters and lexicon words."""

from alicemind.core.interop import register_family as _register_family
from alicemind.latticebert.config import LatticeBertConfig
from alicemind.latticebert.interop import SPEC as _SPEC
from alicemind.latticebert.model import (
    EncoderOutput,
    LatticeBertForPreTraining,
    LatticeBertForQuestionAnswering,
    LatticeBertForSequenceClassification,
    LatticeBertForTokenClassification,
    LatticeBertModel,
    TaskOutput,
)
from alicemind.latticebert.version import __version__

_register_family(_SPEC)  # transformers' Auto classes (once transformers is imported) and `alicemind export`

__all__ = [
    "EncoderOutput",
    "LatticeBertConfig",
    "LatticeBertForPreTraining",
    "LatticeBertForQuestionAnswering",
    "LatticeBertForSequenceClassification",
    "LatticeBertForTokenClassification",
    "LatticeBertModel",
    "LatticeBertTokenizer",
    "TaskOutput",
    "__version__",
]


def __getattr__(name: str):
    # The tokenizer pulls in the tokenizers library; import it on first use only.
    if name == "LatticeBertTokenizer":
        from alicemind.latticebert.tokenization import LatticeBertTokenizer

        return LatticeBertTokenizer
    raise AttributeError(f"module 'alicemind.latticebert' has no attribute {name!r}")
