"""PALM (Pre-training an Autoencoding & autoregressive Language Model): the encoder-decoder of both released code
bases, its joint pre-training objective, converters for the released checkpoints and generation recipes."""

from alicemind.core.interop import register_family as _register_family
from alicemind.palm import hub as _hub  # noqa: F401  (registers palm.ch.base / palm.en.base)
from alicemind.palm.config import PalmConfig
from alicemind.palm.convert import convert_checkpoint, load_model, read_any_checkpoint
from alicemind.palm.interop import SPEC as _SPEC
from alicemind.palm.model import PalmDecoderCache, PalmForConditionalGeneration, PalmModel, Seq2SeqOutput
from alicemind.palm.pretraining import PalmForPreTraining, PretrainingCollator, PretrainingDataConfig, build_instances
from alicemind.palm.tokenization import (
    PalmChineseTokenizer,
    PalmEnglishTokenizer,
    PalmTokenizer,
    detokenize,
    load_tokenizer,
)
from alicemind.palm.version import __version__

_register_family(_SPEC)  # transformers' Auto classes (once transformers is imported) and `alicemind export`

__all__ = [
    "PalmChineseTokenizer",
    "PalmConfig",
    "PalmDecoderCache",
    "PalmEnglishTokenizer",
    "PalmForConditionalGeneration",
    "PalmForPreTraining",
    "PalmModel",
    "PalmTokenizer",
    "PretrainingCollator",
    "PretrainingDataConfig",
    "Seq2SeqOutput",
    "__version__",
    "build_instances",
    "convert_checkpoint",
    "detokenize",
    "load_model",
    "load_tokenizer",
    "read_any_checkpoint",
]
