"""StructVBERT (AliceMind): a single-stream vision-language BERT over detector region features."""

from alicemind.core.interop import register_family as _register_family
from alicemind.structvbert.config import StructVBertConfig
from alicemind.structvbert.interop import SPEC as _SPEC
from alicemind.structvbert.model import (
    EncoderOutput,
    StructVBertForNLVR2,
    StructVBertForPreTraining,
    StructVBertForVQA,
    StructVBertModel,
    TaskOutput,
)
from alicemind.structvbert.optim import BertAdam
from alicemind.structvbert.regions import RegionFeatures
from alicemind.structvbert.version import __version__

_register_family(_SPEC)  # transformers' Auto classes (once transformers is imported) and `alicemind export`

__all__ = [
    "BertAdam",
    "EncoderOutput",
    "RegionFeatures",
    "StructVBertConfig",
    "StructVBertForNLVR2",
    "StructVBertForPreTraining",
    "StructVBertForVQA",
    "StructVBertModel",
    "StructVBertTokenizer",
    "TaskOutput",
    "__version__",
]


def __getattr__(name: str):
    # The tokenizer pulls in the tokenizers library; import it on first use only.
    if name == "StructVBertTokenizer":
        from alicemind.structvbert.tokenization import StructVBertTokenizer

        return StructVBertTokenizer
    raise AttributeError(f"module 'alicemind.structvbert' has no attribute {name!r}")
