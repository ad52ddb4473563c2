"""Data loading: GLUE/CLUE readers, dynamic-padding collation, length-bucketed sampling and token shards."""

from alicemind.core.data import glue_clue as _glue_clue  # noqa: F401  (registers the built-in tasks)
from alicemind.core.data.collator import LABEL_PAD_ID, DataCollatorWithPadding
from alicemind.core.data.corpus import read_documents
from alicemind.core.data.readers import DataFormatError, read_jsonl, read_tsv
from alicemind.core.data.sampler import LengthBucketSampler
from alicemind.core.data.shards import ShardDataset, ShardWriter
from alicemind.core.data.tasks import (
    Columns,
    Example,
    TaskSpec,
    UnknownTaskError,
    get_task,
    list_tasks,
    load_task_examples,
    register_task,
)

__all__ = [
    "LABEL_PAD_ID",
    "Columns",
    "DataCollatorWithPadding",
    "DataFormatError",
    "Example",
    "LengthBucketSampler",
    "ShardDataset",
    "ShardWriter",
    "TaskSpec",
    "UnknownTaskError",
    "get_task",
    "list_tasks",
    "load_task_examples",
    "read_documents",
    "read_jsonl",
    "read_tsv",
    "register_task",
]
