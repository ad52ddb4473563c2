"""The GLUE (TSV) and CLUE (JSON lines) tasks StructBERT was fine-tuned on, registered as data.

Column layouts follow the files as distributed by the GLUE and CLUE benchmarks; label orders follow the original
StructBERT fine-tuning code so that released classifier heads line up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alicemind.core.data.tasks import Columns, TaskSpec, register_task

_BINARY = ("0", "1")
_NLI_EN = ("contradiction", "entailment", "neutral")
_NLI_ZH = ("entailment", "neutral", "contradiction")
_QNLI = ("entailment", "not_entailment")
_GLUE_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
_CLUE_FILES = {"train": "train.json", "dev": "dev.json", "test": "test.json"}
_INDEXED_PAIR_TEST = {"test": Columns(text_a=1, text_b=2, guid=0)}


def _csl_texts(row: Mapping[str, Any]) -> tuple[str, str | None]:
    # The original joins the keyword list with "/" as the first segment and puts the abstract second.
    return "/".join(row["keyword"]), str(row["abst"])


def _wsc_texts(row: Mapping[str, Any]) -> tuple[str, str | None]:
    """Mark the candidate span with ``_..._`` and the pronoun with ``[...]`` in the text (CLUE baseline format)."""
    text, target = str(row["text"]), row["target"]
    marks = [
        (int(target["span1_index"]), len(target["span1_text"]), "_", "_"),
        (int(target["span2_index"]), len(target["span2_text"]), "[", "]"),
    ]
    # Insert from the right so earlier character offsets stay valid.
    for start, length, left, right in sorted(marks, reverse=True):
        text = text[:start] + left + text[start : start + length] + right + text[start + length :]
    return text, None


GLUE_TASKS = [
    TaskSpec(
        name="cola",
        format="tsv",
        files=_GLUE_FILES,
        columns=Columns(text_a=3, label=1, has_header=False),
        split_columns={"test": Columns(text_a=1, guid=0)},
        labels=_BINARY,
        metrics=("mcc",),
    ),
    TaskSpec(
        name="sst-2",
        format="tsv",
        files=_GLUE_FILES,
        columns=Columns(text_a=0, label=1),
        split_columns={"test": Columns(text_a=1, guid=0)},
        labels=_BINARY,
        metrics=("accuracy",),
    ),
    TaskSpec(
        name="mrpc",
        format="tsv",
        files=_GLUE_FILES,
        columns=Columns(text_a=3, text_b=4, label=0),
        split_columns={"test": Columns(text_a=3, text_b=4, guid=0)},
        labels=_BINARY,
        metrics=("accuracy", "f1"),
    ),
    TaskSpec(
        name="sts-b",
        format="tsv",
        files=_GLUE_FILES,
        columns=Columns(text_a=7, text_b=8, label=9, guid=0),
        split_columns={"test": Columns(text_a=7, text_b=8, guid=0)},
        labels=None,
        metrics=("pearson", "spearman"),
    ),
    TaskSpec(
        name="qqp",
        format="tsv",
        files=_GLUE_FILES,
        columns=Columns(text_a=3, text_b=4, label=5, guid=0),
        split_columns=_INDEXED_PAIR_TEST,
        labels=_BINARY,
        metrics=("accuracy", "f1"),
        strict=False,  # older QQP dumps carry a few truncated rows; the original skips them too
    ),
    TaskSpec(
        name="mnli",
        format="tsv",
        files={
            "train": "train.tsv",
            "dev": "dev_matched.tsv",
            "dev_matched": "dev_matched.tsv",
            "dev_mismatched": "dev_mismatched.tsv",
            "test": "test_matched.tsv",
            "test_matched": "test_matched.tsv",
            "test_mismatched": "test_mismatched.tsv",
            # GLUE's diagnostic set: beside the MNLI files (original code), or as shipped by the GLUE download.
            "ax": ("diagnostic.tsv", "AX.tsv", "../diagnostic/diagnostic.tsv"),
        },
        columns=Columns(text_a=8, text_b=9, label=-1, guid=0),
        split_columns={
            "test": Columns(text_a=8, text_b=9, guid=0),
            "test_matched": Columns(text_a=8, text_b=9, guid=0),
            "test_mismatched": Columns(text_a=8, text_b=9, guid=0),
            "ax": Columns(text_a=1, text_b=2, guid=0),
        },
        labels=_NLI_EN,
        metrics=("accuracy",),
    ),
    TaskSpec(
        name="qnli",
        format="tsv",
        files=_GLUE_FILES,
        columns=Columns(text_a=1, text_b=2, label=3, guid=0),
        split_columns=_INDEXED_PAIR_TEST,
        labels=_QNLI,
        metrics=("accuracy",),
    ),
    TaskSpec(
        name="rte",
        format="tsv",
        files=_GLUE_FILES,
        columns=Columns(text_a=1, text_b=2, label=3, guid=0),
        split_columns=_INDEXED_PAIR_TEST,
        labels=_QNLI,
        metrics=("accuracy",),
    ),
    TaskSpec(
        name="wnli",
        format="tsv",
        files=_GLUE_FILES,
        columns=Columns(text_a=1, text_b=2, label=3, guid=0),
        split_columns=_INDEXED_PAIR_TEST,
        labels=_BINARY,
        metrics=("accuracy",),
    ),
]

_PAIR = Columns(text_a="sentence1", text_b="sentence2", label="label", guid="id")

CLUE_TASKS = [
    TaskSpec(name="afqmc", format="jsonl", files=_CLUE_FILES, columns=_PAIR, labels=_BINARY, metrics=("accuracy",)),
    TaskSpec(
        name="tnews",
        format="jsonl",
        files=_CLUE_FILES,
        columns=Columns(text_a="sentence", text_b="keywords", label="label", guid="id"),
        # All 17 codes as in the original (the data uses 15 of them: 105 and 111 never occur).
        labels=tuple(str(i) for i in range(100, 117)),
        metrics=("accuracy",),
    ),
    TaskSpec(
        name="iflytek",
        format="jsonl",
        files=_CLUE_FILES,
        columns=Columns(text_a="sentence", label="label", guid="id"),
        labels=tuple(str(i) for i in range(119)),
        metrics=("accuracy",),
    ),
    TaskSpec(
        name="cmnli",
        format="jsonl",
        files=_CLUE_FILES,
        columns=_PAIR,
        labels=_NLI_ZH,
        metrics=("accuracy",),
        skip_labels=("-",),  # pairs without annotator agreement
    ),
    TaskSpec(
        name="ocnli",
        format="jsonl",
        files={"train": "train.50k.json", "dev": "dev.json", "test": "test.json"},
        columns=_PAIR,
        labels=_NLI_ZH,
        metrics=("accuracy",),
        skip_labels=("-",),
    ),
    TaskSpec(
        name="csl",
        format="jsonl",
        files=_CLUE_FILES,
        columns=Columns(text_a="keyword", text_b="abst", label="label", guid="id"),
        formatter=_csl_texts,
        labels=_BINARY,
        metrics=("accuracy",),
    ),
    TaskSpec(
        name="cluewsc2020",
        format="jsonl",
        files=_CLUE_FILES,
        columns=Columns(text_a="text", label="label", guid="id"),
        formatter=_wsc_texts,
        labels=("true", "false"),
        metrics=("accuracy",),
    ),
]

for _spec in GLUE_TASKS + CLUE_TASKS:
    register_task(_spec)
