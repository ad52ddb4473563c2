"""mPLUG for other tools: transformers' Auto classes (model_type ``mplug``: captioning as image-text-to-text, VQA,
pre-training). Data only; :mod:`alicemind.core.interop` does the work."""

from alicemind.core.interop import FamilySpec
from alicemind.mplug.config import MPlugConfig
from alicemind.mplug.model import MPlugForCaption, MPlugForVQA
from alicemind.mplug.objectives import MPlugForPreTraining

SPEC = FamilySpec(
    MPlugConfig,
    {
        "image-text-to-text": MPlugForCaption,
        "visual-question-answering": MPlugForVQA,
        "pretraining": MPlugForPreTraining,
    },
)
