"""mPLUG: CLIP vision, skip-connected fusion, ITC/ITM/MLM/PrefixLM pre-training, caption, VQA, retrieval,
grounding; over alicemind-core."""

from alicemind.core.interop import register_family as _register_family
from alicemind.mplug.config import MPlugConfig
from alicemind.mplug.grounding import MPlugForGrounding
from alicemind.mplug.interop import SPEC as _SPEC
from alicemind.mplug.model import MPlugForCaption, MPlugForVQA, MPlugOutput, MPlugPreTrainedModel
from alicemind.mplug.objectives import MPlugForPreTraining, MPlugForRetrieval
from alicemind.mplug.processor import ImageError, MPlugProcessor, load_image
from alicemind.mplug.version import __version__

_register_family(_SPEC)  # transformers' Auto classes (once transformers is imported) and `alicemind export`

__all__ = [
    "ImageError",
    "MPlugConfig",
    "MPlugForCaption",
    "MPlugForGrounding",
    "MPlugForPreTraining",
    "MPlugForRetrieval",
    "MPlugForVQA",
    "MPlugOutput",
    "MPlugPreTrainedModel",
    "MPlugProcessor",
    "__version__",
    "load_image",
]
