"""PLUG for other tools: transformers' Auto classes (model_type ``plug``: the NLG encoder-decoder and the NLU
classifier) and ``alicemind export``. Data only; :mod:`alicemind.core.interop` does the work."""

from alicemind.core.interop import FamilySpec
from alicemind.plug.config import PlugConfig
from alicemind.plug.model import PlugForConditionalGeneration, PlugForSequenceClassification

SPEC = FamilySpec(
    PlugConfig,
    {
        "seq2seq-lm": PlugForConditionalGeneration,
        "sequence-classification": PlugForSequenceClassification,
    },
    is_encoder_decoder=True,
)
