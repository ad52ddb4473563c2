"""PALM for other tools: transformers' AutoConfig / AutoModel / AutoModelForSeq2SeqLM (model_type ``palm``) and
``alicemind export onnx``. Data only; :mod:`alicemind.core.interop` does the work."""

from alicemind.core.interop import FamilySpec
from alicemind.palm.config import PalmConfig
from alicemind.palm.model import PalmForConditionalGeneration, PalmModel

SPEC = FamilySpec(PalmConfig, {"base": PalmModel, "seq2seq-lm": PalmForConditionalGeneration}, is_encoder_decoder=True)
