"""SDCUP for other tools: transformers' Auto classes (model_type ``sdcup``: the encoder and the pre-training model;
the NL2SQL head has no transformers task) and ``alicemind export``. Data only."""

from alicemind.core.interop import FamilySpec
from alicemind.sdcup.config import SdcupConfig
from alicemind.sdcup.model import SdcupEncoder, SdcupForPreTraining

SPEC = FamilySpec(
    SdcupConfig,
    {
        "base": SdcupEncoder,
        "pretraining": SdcupForPreTraining,
    },
)
