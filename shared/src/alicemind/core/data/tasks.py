"""GLUE and CLUE fine-tuning tasks described as data, and a loader that turns their files into examples."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alicemind.core.data.readers import DataFormatError, iter_jsonl_numbered, iter_tsv_numbered

Column = int | str  # a TSV column index (negative counts from the end) or a JSON key


class UnknownTaskError(KeyError):
    """An unknown task name or split; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])


@dataclass(frozen=True)
class Columns:
    """Where the fields of an example sit in one file layout."""

    text_a: Column
    text_b: Column | None = None
    label: Column | None = None
    guid: Column | None = None
    has_header: bool = True


@dataclass(frozen=True)
class Example:
    """One labelled (or, for test splits, unlabelled) text or text pair."""

    guid: str
    text_a: str
    text_b: str | None = None
    label: str | float | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A classification or regression task: its files, column layout, label set and metrics.

    ``labels=None`` marks a regression task. ``split_columns`` overrides ``columns`` for splits laid out
    differently (GLUE test files have an index column and no label). ``files`` maps a split to a file name or a
    tuple of alternatives (the first that exists is read). ``formatter`` builds ``(text_a, text_b)`` from a JSON
    row when the text is not a plain column. Rows whose label is in ``skip_labels`` are dropped; with
    ``strict=False`` rows too short for the layout are dropped instead of raising (QQP has a few).
    """

    name: str
    format: str  # "tsv" or "jsonl"
    files: Mapping[str, str | tuple[str, ...]]
    columns: Columns
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    split_columns: Mapping[str, Columns] = field(default_factory=dict)
    skip_labels: tuple[str, ...] = ()
    formatter: Callable[[Mapping[str, Any]], tuple[str, str | None]] | None = None
    strict: bool = True

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        """Number of classifier outputs (1 for regression)."""
        return 1 if self.labels is None else len(self.labels)

    def label_id(self, label: str | float) -> int | float:
        """Map a label string to its class index (a float stays a float for regression)."""
        if self.labels is None:
            return float(label)
        try:
            return self.labels.index(str(label))
        except ValueError:
            raise ValueError(f"unknown label {label!r} for task {self.name}; expected one of {self.labels}") from None

    def columns_for(self, split: str) -> Columns:
        """The layout used by ``split``."""
        return self.split_columns.get(split, self.columns)


_REGISTRY: dict[str, TaskSpec] = {}


def _key(name: str) -> str:
    # "SST-2", "sst2", "sst_2" and CLUE's "afqmc_public" all resolve to the same entry.
    return re.sub(r"[-_\s]", "", name.lower()).removesuffix("public")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add (or replace) a task in the registry; returns it."""
    _REGISTRY[_key(spec.name)] = spec
    return spec


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(spec.name for spec in _REGISTRY.values())


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Look a task up by name (case, '-' and '_' insensitive); an unknown name lists the known ones."""
    if isinstance(name, TaskSpec):
        return name
    spec = _REGISTRY.get(_key(name))
    if spec is None:
        close = difflib.get_close_matches(name.lower(), list_tasks(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownTaskError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(list_tasks())}")
    return spec


def load_task_examples(task: str | TaskSpec, data_dir: str | os.PathLike[str], split: str) -> list[Example]:
    """Read ``split`` of ``task`` from its directory ``data_dir`` (the folder holding e.g. ``train.tsv``)."""
    spec = get_task(task)
    if split not in spec.files:
        raise UnknownTaskError(f"task {spec.name} has no split {split!r}; known splits: {', '.join(spec.files)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        names = sorted({n if isinstance(n, str) else n[0] for n in spec.files.values()})
        raise FileNotFoundError(
            f"data directory {data_dir} for task {spec.name} does not exist (expected it to hold {', '.join(names)})"
        )
    path = _resolve_file(data_dir, spec.files[split])
    columns = spec.columns_for(split)
    is_test = split.startswith("test") or split == "ax"
    examples = []
    for line_no, row in _rows(spec, path, columns):
        try:
            example = _make_example(spec, row, columns, f"{split}-{len(examples)}", with_label=not is_test)
        except (IndexError, KeyError, TypeError) as e:
            if not spec.strict:
                continue
            raise DataFormatError(f"{path}:{line_no}: row does not match the {spec.name} layout: {e!r}") from None
        except ValueError as e:
            raise DataFormatError(f"{path}:{line_no}: {e}") from None
        if example is not None:
            examples.append(example)
    return examples


def _resolve_file(data_dir: Path, names: str | tuple[str, ...]) -> Path:
    candidates = [data_dir / n for n in ((names,) if isinstance(names, str) else names)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"data file {' or '.join(str(p) for p in candidates)} does not exist")


def _rows(spec: TaskSpec, path: Path, columns: Columns) -> Iterator[tuple[int, Any]]:
    if spec.format == "tsv":
        return iter_tsv_numbered(path, has_header=columns.has_header, strict=spec.strict)
    if spec.format == "jsonl":
        return iter_jsonl_numbered(path)
    raise ValueError(f"task {spec.name}: unknown file format {spec.format!r} (expected 'tsv' or 'jsonl')")


def _make_example(spec: TaskSpec, row: Any, columns: Columns, default_guid: str, with_label: bool) -> Example | None:
    if spec.formatter is not None:
        text_a, text_b = spec.formatter(row)
    else:
        text_a = str(row[columns.text_a])
        text_b = None if columns.text_b is None else str(row[columns.text_b])
    label: str | float | None = None
    if with_label and columns.label is not None:
        raw = row[columns.label]
        label = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if label in spec.skip_labels:
            return None
        if spec.labels is None:
            try:
                label = float(label)
            except ValueError:
                raise ValueError(f"{spec.name} expects a numeric label, found {label!r}") from None
        elif label not in spec.labels:
            raise ValueError(f"unknown label {label!r} for task {spec.name}; expected one of {spec.labels}")
    guid = default_guid
    if columns.guid is not None and _has(row, columns.guid):
        guid = str(row[columns.guid])
    return Example(guid=guid, text_a=text_a, text_b=text_b, label=label)


def _has(row: Any, column: Column) -> bool:
    if isinstance(row, Mapping):
        return column in row
    return -len(row) <= int(column) < len(row)
