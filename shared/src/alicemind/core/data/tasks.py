"""Fine-tuning tasks described as data (GLUE, CLUE, your own files), and a loader that turns files into examples."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alicemind.core.data.readers import (
    DataFormatError,
    iter_delimited_numbered,
    iter_jsonl_numbered,
    read_header,
)

logger = logging.getLogger(__name__)

Column = int | str  # a TSV/CSV column index (negative counts from the end), a header name, or a JSON key
# Delimited formats: (delimiter, quote character); GLUE TSV treats quotes as ordinary characters.
DELIMITED = {"tsv": ("\t", None), "csv": (",", '"')}
SUFFIX_FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


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
    tuple of alternatives (the first that exists is read; an absolute path is used as it is). ``format`` is
    ``tsv``, ``csv``, ``jsonl`` or ``auto`` (from each file's suffix). ``formatter`` builds ``(text_a, text_b)``
    from a JSON row when the text is not a plain column. Rows whose label is in ``skip_labels`` are dropped; with
    ``strict=False`` rows too short for the layout are dropped instead of raising (QQP has a few).
    ``label_origin`` says where the label set came from (e.g. the training file), for error messages.
    """

    name: str
    format: str  # "tsv", "csv", "jsonl" or "auto"
    files: Mapping[str, str | tuple[str, ...]]
    columns: Columns
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    split_columns: Mapping[str, Columns] = field(default_factory=dict)
    skip_labels: tuple[str, ...] = ()
    formatter: Callable[[Mapping[str, Any]], tuple[str, str | None]] | None = None
    strict: bool = True
    label_origin: str | None = None

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def kind(self) -> str:
        """``classify`` or ``regress`` (the head a model needs for this task)."""
        return "regress" if self.labels is None else "classify"

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
            raise ValueError(self._unknown_label(label)) from None

    def _unknown_label(self, label: Any) -> str:
        if self.label_origin:
            return f"label {label!r} does not occur in {self.label_origin} (labels: {', '.join(self.labels or ())})"
        return f"unknown label {label!r} for task {self.name}; expected one of {self.labels}"

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


def is_registered(spec: TaskSpec) -> bool:
    """Whether ``spec`` is a registered task (its label order may differ), not one built from your own files."""
    entry = _REGISTRY.get(_key(spec.name))
    return entry is not None and entry.files == spec.files and entry.columns == spec.columns


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
    path = task_file(spec, data_dir, split)
    return read_examples(spec, path, split)


def task_file(spec: TaskSpec, data_dir: str | os.PathLike[str], split: str) -> Path:
    """The file holding ``split`` of ``spec`` under ``data_dir`` (FileNotFoundError naming what was looked for)."""
    if split not in spec.files:
        raise UnknownTaskError(f"task {spec.name} has no split {split!r}; known splits: {', '.join(spec.files)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        names = sorted({n if isinstance(n, str) else n[0] for n in spec.files.values()})
        raise FileNotFoundError(
            f"data directory {data_dir} for task {spec.name} does not exist (expected it to hold {', '.join(names)})"
        )
    return _resolve_file(data_dir, spec.files[split])


def read_examples(spec: TaskSpec, path: str | os.PathLike[str], split: str = "dev") -> list[Example]:
    """The examples of one file laid out as ``spec``'s ``split`` (test splits carry no labels)."""
    path = Path(path)
    is_test = split.startswith("test") or split == "ax"
    examples = []
    for line_no, row, columns in iter_task_rows(spec, path, split):
        try:
            example = _make_example(spec, row, columns, f"{split}-{len(examples)}", with_label=not is_test)
        except _MissingField as e:
            if not spec.strict:
                continue
            raise DataFormatError(f"{path}:{line_no}: row does not match the {spec.name} layout: {e}") from None
        except (IndexError, KeyError, TypeError) as e:
            if not spec.strict:
                continue
            raise DataFormatError(f"{path}:{line_no}: row does not match the {spec.name} layout: {e!r}") from None
        except ValueError as e:
            raise DataFormatError(f"{path}:{line_no}: {e}") from None
        if example is not None:
            examples.append(example)
    return examples


def read_labels(spec: TaskSpec, path: str | os.PathLike[str], split: str = "train") -> list[tuple[int, str]]:
    """``(line_number, label)`` of every row of a file (labels as written; an empty one is an error)."""
    path = Path(path)
    found = []
    for line_no, row, columns in iter_task_rows(spec, path, split):
        if columns.label is None:
            raise DataFormatError(f"{path}:{line_no}: the {spec.name} layout has no label column")
        try:
            found.append((line_no, _label_text(row, columns.label)))
        except IndexError:
            raise DataFormatError(f"{path}:{line_no}: no label column {columns.label} in this row") from None
        except (ValueError, _MissingField) as e:
            raise DataFormatError(f"{path}:{line_no}: {e}") from None
    return found


def file_format(spec: TaskSpec, path: Path) -> str:
    """``spec.format``, or for ``auto`` the format its suffix names."""
    if spec.format != "auto":
        return spec.format
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataFormatError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; name the file "
                              f".tsv, .csv or .jsonl, or set format=tsv|csv|jsonl")  # fmt: skip
    return fmt


def iter_task_rows(spec: TaskSpec, path: Path, split: str) -> Iterator[tuple[int, Any, Columns]]:
    """``(line_number, row, columns)`` of a file; header names in ``columns`` become indices for TSV/CSV."""
    fmt = file_format(spec, path)
    columns = spec.columns_for(split)
    if fmt == "jsonl":
        for line_no, row in iter_jsonl_numbered(path):
            yield line_no, row, columns
        return
    if fmt not in DELIMITED:
        raise ValueError(f"task {spec.name}: unknown file format {fmt!r} (expected 'tsv', 'csv', 'jsonl' or 'auto')")
    delimiter, quote = DELIMITED[fmt]
    columns = _by_index(columns, path, delimiter, quote)
    for line_no, row in iter_delimited_numbered(
        path, delimiter=delimiter, quotechar=quote, has_header=columns.has_header, strict=spec.strict
    ):
        yield line_no, row, columns


def _by_index(columns: Columns, path: Path, delimiter: str, quote: str | None) -> Columns:
    named = {k: v for k, v in dataclasses.asdict(columns).items() if k != "has_header" and isinstance(v, str)}
    if not named:
        return columns
    if not columns.has_header:
        raise DataFormatError(f"{path}: columns {sorted(named.values())} are given by name but the file has no header")
    first = read_header(path, delimiter=delimiter, quotechar=quote)
    header = [h.strip() for h in first[1]] if first else []
    missing = [name for name in named.values() if name not in header]
    if missing:
        raise DataFormatError(f"{path}:{first[0] if first else 1}: no column {missing[0]!r} in the header "
                              f"(columns: {', '.join(header) or 'none'})")  # fmt: skip
    return dataclasses.replace(columns, **{k: header.index(v) for k, v in named.items()})


def _resolve_file(data_dir: Path, names: str | tuple[str, ...]) -> Path:
    candidates = [data_dir / n for n in ((names,) if isinstance(names, str) else names)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"data file {' or '.join(str(p) for p in candidates)} does not exist")


class _MissingField(LookupError):
    """A JSON row lacks a field of the layout."""


def _field(row: Any, column: Column) -> Any:
    if isinstance(row, Mapping) and column not in row:
        raise _MissingField(f"no field {column!r} (fields: {', '.join(map(str, row))})")
    return row[column]


def _label_text(row: Any, column: Column) -> str:
    raw = _field(row, column)
    label = str(raw).lower() if isinstance(raw, bool) else str(raw)
    if not label.strip():
        raise ValueError(f"empty label in column {column!r}")
    return label


def _make_example(spec: TaskSpec, row: Any, columns: Columns, default_guid: str, with_label: bool) -> Example | None:
    if spec.formatter is not None:
        text_a, text_b = spec.formatter(row)
    else:
        text_a = str(_field(row, columns.text_a))
        text_b = None if columns.text_b is None else str(_field(row, columns.text_b))
    label: str | float | None = None
    if with_label and columns.label is not None:
        label = _label_text(row, columns.label)
        if label in spec.skip_labels:
            return None
        if spec.labels is None:
            try:
                label = float(label)
            except ValueError:
                raise ValueError(f"{spec.name} expects a numeric label, found {label!r}") from None
        elif label not in spec.labels:
            raise ValueError(spec._unknown_label(label))
    guid = default_guid
    if columns.guid is not None and _has(row, columns.guid):
        guid = str(row[columns.guid])
    return Example(guid=guid, text_a=text_a, text_b=text_b, label=label)


def _has(row: Any, column: Column) -> bool:
    if isinstance(row, Mapping):
        return column in row
    return -len(row) <= int(column) < len(row)


# ----- self-describing folders: a task spec as JSON --------------------------------------------------------------


def task_to_dict(spec: TaskSpec) -> dict[str, Any]:
    """A JSON-ready description of ``spec``: registered tasks by name (with their labels, to check the order on
    reading), others in full (columns, files, labels, metrics)."""
    base = {"name": spec.name, "kind": spec.kind, "labels": None if spec.labels is None else list(spec.labels)}
    if is_registered(spec):
        return {**base, "registered": True}
    if spec.formatter is not None:
        raise ValueError(f"task {spec.name} builds its texts with a Python function; register it to save it by name")
    return {
        **base,
        "format": spec.format,
        "files": {k: v if isinstance(v, str) else list(v) for k, v in spec.files.items()},
        "columns": dataclasses.asdict(spec.columns),
        "split_columns": {k: dataclasses.asdict(v) for k, v in spec.split_columns.items()},
        "metrics": list(spec.metrics),
        "skip_labels": list(spec.skip_labels),
        "strict": spec.strict,
    }


def task_from_dict(data: Mapping[str, Any]) -> TaskSpec:
    """The spec :func:`task_to_dict` wrote. A registered task keeps the saved label order: the saved model's
    class ids follow it, whatever the registry says now (a differing order is logged)."""
    labels = None if data.get("labels") is None else tuple(str(x) for x in data["labels"])
    if data.get("registered"):
        spec = get_task(data["name"])
        if spec.labels != labels:
            logger.warning("task %s: using the saved labels %s (the registry now says %s)", spec.name, labels,
                           spec.labels)  # fmt: skip
            spec = dataclasses.replace(spec, labels=labels)
        return spec
    files = {k: v if isinstance(v, str) else tuple(v) for k, v in data["files"].items()}
    return TaskSpec(
        name=data["name"],
        format=data.get("format", "auto"),
        files=files,
        columns=Columns(**data["columns"]),
        labels=labels,
        metrics=tuple(data.get("metrics") or (("accuracy",) if labels else ("pearson", "spearman"))),
        split_columns={k: Columns(**v) for k, v in (data.get("split_columns") or {}).items()},
        skip_labels=tuple(data.get("skip_labels") or ()),
        strict=data.get("strict", True),
        label_origin="the training labels saved with the model" if labels else None,
    )
