"""Checkpoint IO: safetensors, safe readers for legacy PyTorch / fairseq / DeepSpeed / TF1 files, key mapping.

No reader here runs code from a file: torch files load with ``weights_only=True`` or, for the pickled extras of the
releases (argparse namespaces, optimizer objects), with a restricted unpickler that maps them to plain dicts.
"""

from alicemind.core.checkpoint.errors import (
    CheckpointError,
    CheckpointMismatchError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
)
from alicemind.core.checkpoint.fairseq import FAIRSEQ_SPECIAL_SYMBOLS, load_fairseq_checkpoint, read_fairseq_dictionary
from alicemind.core.checkpoint.keys import detect_prefix, load_into_model, rename_keys, strip_prefix
from alicemind.core.checkpoint.model_parallel import SplitRule, load_deepspeed_mp_shards, merge_model_parallel_shards
from alicemind.core.checkpoint.safe_pickle import DEFAULT_PLACEHOLDER_GLOBALS, PickledObject
from alicemind.core.checkpoint.safetensors_io import load_safetensors, read_safetensors_metadata, save_safetensors
from alicemind.core.checkpoint.tf1 import TFTensorInfo, list_tf_checkpoint, load_tf_checkpoint
from alicemind.core.checkpoint.torch_files import detect_format, load_checkpoint_object, load_state_dict_file

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "UnsafeCheckpointError",
    "DEFAULT_PLACEHOLDER_GLOBALS",
    "FAIRSEQ_SPECIAL_SYMBOLS",
    "PickledObject",
    "SplitRule",
    "TFTensorInfo",
    "detect_format",
    "detect_prefix",
    "list_tf_checkpoint",
    "load_checkpoint_object",
    "load_deepspeed_mp_shards",
    "load_fairseq_checkpoint",
    "load_into_model",
    "load_safetensors",
    "load_state_dict_file",
    "load_tf_checkpoint",
    "merge_model_parallel_shards",
    "read_fairseq_dictionary",
    "read_safetensors_metadata",
    "rename_keys",
    "save_safetensors",
    "strip_prefix",
]
