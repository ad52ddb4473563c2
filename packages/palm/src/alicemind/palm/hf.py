"""PALM in transformers: ``AutoConfig`` / ``AutoModel`` / ``AutoModelForSeq2SeqLM`` under model_type ``palm``.

Imported by :mod:`alicemind.core.interop.hooks` when transformers is imported; not meant to be imported directly.
"""

from alicemind.core.interop.hf import FamilySpec, register_family
from alicemind.palm.config import PalmConfig
from alicemind.palm.model import PalmForConditionalGeneration, PalmModel

MODELS = register_family(
    FamilySpec(
        PalmConfig, {"base": PalmModel, "seq2seq-lm": PalmForConditionalGeneration}, is_encoder_decoder=True
    )
)
