"""PLUG: PALM's encoder-decoder at 27B on torch.distributed (tensor parallel + FSDP2), the released Megatron shards
converted by streaming, memory plans, generation and fine-tuning."""

from alicemind.core.interop import register_family as _register_family
from alicemind.plug import hub as _hub  # noqa: F401  (registers plug.27b)
from alicemind.plug.config import PlugConfig
from alicemind.plug.convert import convert_megatron, merge_state_dicts, read_checkpoint, split_state_dict
from alicemind.plug.interop import SPEC as _SPEC
from alicemind.plug.model import PlugForConditionalGeneration, PlugForSequenceClassification
from alicemind.plug.parallel import (
    load_distributed,
    load_sharded_weights,
    parallelize_plug,
    save_distributed,
    unfuse_projections,
)
from alicemind.plug.plan import memory_plan
from alicemind.plug.tokenization import PlugTokenizer
from alicemind.plug.version import __version__

_register_family(_SPEC)  # transformers' Auto classes (once transformers is imported) and `alicemind export`

__all__ = [
    "PlugConfig",
    "PlugForConditionalGeneration",
    "PlugForSequenceClassification",
    "PlugTokenizer",
    "__version__",
    "convert_megatron",
    "load_distributed",
    "load_sharded_weights",
    "memory_plan",
    "merge_state_dicts",
    "parallelize_plug",
    "read_checkpoint",
    "save_distributed",
    "split_state_dict",
    "unfuse_projections",
]
