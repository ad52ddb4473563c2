"""mPLUG: CLIP vision, skip-connected fusion, ITC/ITM/MLM/PrefixLM pre-training, caption, VQA, retrieval,
grounding; over alicemind-core."""

from alicemind.mplug.config import MPlugConfig
from alicemind.mplug.grounding import MPlugForGrounding
from alicemind.mplug.model import MPlugForCaption, MPlugForVQA, MPlugOutput, MPlugPreTrainedModel
from alicemind.mplug.objectives import MPlugForPreTraining, MPlugForRetrieval
from alicemind.mplug.processor import ImageError, MPlugProcessor, load_image
from alicemind.mplug.version import __version__

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
