"""Data loading: GLUE/CLUE readers, your own files (own_data, own_spans), dynamic-padding collation,
length-bucketed sampling and token shards.

The torch-dependent parts (collator, sampler, shards) are imported on first use so that reading task files and
the ``alicemind`` command's start-up stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alicemind.core.data import glue_clue as _glue_clue  # noqa: F401  (registers the built-in tasks)
from alicemind.core.data.corpus import read_documents
from alicemind.core.data.own_data import build_label_set, own_task, read_columns, split_files
from alicemind.core.data.own_spans import QAExample, TaggedSentence, read_conll, read_squad, tag_set
from alicemind.core.data.readers import DataFormatError, read_jsonl, read_tsv
from alicemind.core.data.tasks import (
    Columns,
    Example,
    TaskSpec,
    UnknownTaskError,
    get_task,
    list_tasks,
    load_task_examples,
    read_examples,
    register_task,
    task_from_dict,
    task_to_dict,
)

if TYPE_CHECKING:
    from alicemind.core.data.collator import LABEL_PAD_ID, DataCollatorWithPadding
    from alicemind.core.data.sampler import LengthBucketSampler
    from alicemind.core.data.shards import ShardDataset, ShardWriter

_LAZY = {
    "LABEL_PAD_ID": "collator",
    "DataCollatorWithPadding": "collator",
    "LengthBucketSampler": "sampler",
    "ShardDataset": "shards",
    "ShardWriter": "shards",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"alicemind.core.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LABEL_PAD_ID",
    "Columns",
    "DataCollatorWithPadding",
    "DataFormatError",
    "Example",
    "LengthBucketSampler",
    "QAExample",
    "ShardDataset",
    "ShardWriter",
    "TaggedSentence",
    "TaskSpec",
    "UnknownTaskError",
    "build_label_set",
    "get_task",
    "list_tasks",
    "load_task_examples",
    "own_task",
    "read_columns",
    "read_conll",
    "read_documents",
    "read_examples",
    "read_jsonl",
    "read_squad",
    "read_tsv",
    "register_task",
    "split_files",
    "tag_set",
    "task_from_dict",
    "task_to_dict",
]
