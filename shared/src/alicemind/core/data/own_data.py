"""Your own labelled files as tasks: TSV, CSV or JSON lines, columns by name or index, labels read from training.

Every family's generic recipes (``classify``, ``regress``, ``seq2seq``, ...) come here for the file reading, the
column choice, the label set and the task spec; a family only maps the result onto its head. Errors are
``DataFormatError`` / ``FileNotFoundError`` naming the file and line, which the command line prints as one line
with exit status 2.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from alicemind.core.data.readers import DataFormatError, iter_jsonl_numbered, parse_json_object, read_header
from alicemind.core.data.tasks import (
    DELIMITED,
    SUFFIX_FORMATS,
    Column,
    Columns,
    TaskSpec,
    file_format,
    iter_task_rows,
    read_labels,
)

SPLITS = ("train", "dev", "test")
SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".txt", ".conll", ".bio")
# Column names tried, in order, when a recipe leaves a column to be found ("auto").
TEXT_NAMES = ("text", "sentence", "text_a", "sentence1", "question", "content")
PAIR_NAMES = ("text_b", "sentence2", "context")
LABEL_NAMES = ("label", "labels", "target", "score")
SOURCE_NAMES = ("source", "src", "input")
TARGET_NAMES = ("target", "tgt", "output", "summary")
DEFAULT_METRICS = {"classify": ("accuracy",), "regress": ("pearson", "spearman")}


def split_files(
    data_dir: str | os.PathLike[str] | None, files: Mapping[str, str | None] | None = None, *, stem: str = ""
) -> dict[str, str | tuple[str, ...]]:
    """Where each split lives: an explicit path from ``files`` (``{"train": "a.csv"}``), else
    ``<data_dir>/<split>.{tsv,csv,jsonl,json,txt}`` (the first that exists). ``train`` must be found."""
    given = {k: str(v) for k, v in (files or {}).items() if v}
    unknown = sorted(set(given) - set(SPLITS))
    if unknown:
        raise DataFormatError(f"unknown split(s) {unknown}; files can be given for {', '.join(SPLITS)}")
    if data_dir is None and "train" not in given:
        raise FileNotFoundError(
            "no training data given: add data_dir=FOLDER (holding train.tsv, dev.tsv) or train=FILE"
        )
    base = Path(data_dir) if data_dir is not None else None
    if base is not None and not base.is_dir():
        raise FileNotFoundError(f"data directory {base} does not exist")
    out: dict[str, str | tuple[str, ...]] = {}
    for split in SPLITS:
        if split in given:
            path = Path(given[split]) if base is None else base / given[split]
            if not path.is_file():
                raise FileNotFoundError(f"{split} file {path} does not exist")
            out[split] = str(path.resolve())
        elif base is not None:
            candidates = [base / f"{stem}{split}{suffix}" for suffix in SUFFIXES]
            found = [p for p in candidates if p.is_file()]
            if found:
                out[split] = str(found[0].resolve())
    if "train" not in out:
        raise FileNotFoundError(f"no training file in {base}: expected train.tsv, train.csv or train.jsonl there")
    return out


def first_row(path: Path, fmt: str) -> tuple[int, list[str] | dict[str, Any]] | None:
    """``(line, fields)`` of the first row of a TSV/CSV file, or ``(line, object)`` of a JSON-lines file."""
    if fmt == "jsonl":
        return next(iter_jsonl_numbered(path), None)
    delimiter, quote = DELIMITED[fmt]
    return read_header(path, delimiter=delimiter, quotechar=quote)


def resolve_columns(
    path: Path,
    fmt: str,
    wanted: Mapping[str, Column | None],
    defaults: Mapping[str, tuple[str, ...]],
    *,
    header: bool | str | None = "auto",
    positions: Mapping[str, int] | None = None,
    required: Sequence[str] = (),
) -> tuple[dict[str, Column | None], bool]:
    """Pick each column of ``wanted`` (``None`` = find it) and say whether the file has a header row.

    A named column must exist; a ``None`` one takes the first of its ``defaults`` names present, else (no header)
    its index in ``positions``. ``header="auto"`` (or None) means: the first row is a header when it holds a given
    name or one of the default names. A ``required`` column that cannot be found is an error naming file and line.
    """
    row = first_row(path, fmt)
    if row is None:
        raise DataFormatError(f"{path}: the file holds no rows")
    line_no, first = row
    if fmt == "jsonl":
        names: list[str] = list(first)
        has_header = True
    else:
        names = [str(f).strip() for f in first]
        given_names = [v for v in wanted.values() if isinstance(v, str)]
        if header is None or header == "auto":
            known = set(given_names) | {n for group in defaults.values() for n in group}
            has_header = bool(known & set(names))
        else:
            has_header = bool(header)
    chosen: dict[str, Column | None] = {}
    for key, value in wanted.items():
        if isinstance(value, str) and value not in names:
            what = "field" if fmt == "jsonl" else "column"
            where = f"{path}:{line_no}" if has_header or fmt == "jsonl" else str(path)
            raise DataFormatError(f"{where}: no {what} {value!r} (found: {', '.join(names) or 'none'})")
        if value is None and has_header:
            value = next((n for n in defaults.get(key, ()) if n in names), None)
        if value is None and not has_header and positions and key in positions:
            value = positions[key]
        if value is None and key in required:
            what = "fields" if fmt == "jsonl" else "columns"
            raise DataFormatError(f"{path}:{line_no}: no {key} column found (tried {', '.join(defaults.get(key, ()))};"
                                  f" {what}: {', '.join(names)}); set columns.{key}=NAME or INDEX")  # fmt: skip
        chosen[key] = value
    return chosen, has_header


def build_label_set(
    observed: Sequence[tuple[int, str]], path: Path, given: Sequence[Any] | None = None
) -> tuple[str, ...]:
    """The class labels: ``given`` in its order (every training label must be in it), else the sorted set of
    ``observed`` ``(line, label)`` pairs."""
    if given is not None:
        labels = tuple(str(x) for x in given)
        if len(set(labels)) != len(labels):
            raise DataFormatError(f"labels={list(labels)} names a label twice")
        for line_no, label in observed:
            if label not in labels:
                raise DataFormatError(f"{path}:{line_no}: label {label!r} is not in labels=[{', '.join(labels)}]")
        return labels
    labels = tuple(sorted({label for _, label in observed}))
    if len(labels) < 2:
        raise DataFormatError(f"{path}: the training file has {len(labels)} distinct label(s) {list(labels)}; "
                              "classification needs at least 2")  # fmt: skip
    return labels


def own_task(
    kind: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    files: Mapping[str, str | None] | None = None,
    columns: Mapping[str, Column | None] | None = None,
    labels: Sequence[Any] | None = None,
    header: bool | str | None = "auto",
    format: str = "auto",
    name: str | None = None,
    metrics: Sequence[str] | None = None,
) -> TaskSpec:
    """A ``classify`` or ``regress`` task over your own files (see :func:`split_files` for where they are).

    ``columns`` maps ``text_a`` / ``text_b`` / ``label`` to a header name or an index (None = find it: ``text``,
    ``sentence``..., else column 0; ``label``, else the last column). Class labels are ``labels`` in the order
    given, or the sorted set found in the training file; a dev label outside it is an error naming its line.
    """
    if kind not in DEFAULT_METRICS:
        raise DataFormatError(f"unknown task kind {kind!r}; expected one of {', '.join(DEFAULT_METRICS)}")
    paths = split_files(data_dir, files)
    train = Path(str(paths["train"]))
    fmt = format if format != "auto" else SUFFIX_FORMATS.get(train.suffix.lower(), "tsv")
    wanted = {"text_a": None, "text_b": None, "label": None, **dict(columns or {})}
    unknown = sorted(set(wanted) - {"text_a", "text_b", "label"})
    if unknown:
        raise DataFormatError(f"unknown column key(s) {unknown}; columns are text_a, text_b, label")
    defaults = {"text_a": TEXT_NAMES, "text_b": PAIR_NAMES, "label": LABEL_NAMES}
    chosen, has_header = resolve_columns(train, fmt, wanted, defaults, header=header,
                                         positions={"text_a": 0, "label": -1}, required=("text_a", "label"))  # fmt: skip
    cols = Columns(text_a=chosen["text_a"], text_b=chosen["text_b"], label=chosen["label"], has_header=has_header)
    spec = TaskSpec(
        name=name or f"own-{kind}",
        format=fmt if format != "auto" else "auto",
        files=paths,
        columns=cols,
        labels=None,
        metrics=tuple(metrics or DEFAULT_METRICS[kind]),
        # Test files may lack the label column: the same layout, read without it.
        split_columns={"test": Columns(text_a=cols.text_a, text_b=cols.text_b, has_header=has_header)},
    )
    observed = read_labels(spec, train)
    if not observed:
        raise DataFormatError(f"{train}: the training file holds no examples")
    if kind == "regress":
        return spec
    label_set = build_label_set(observed, train, labels)
    return dataclasses.replace(spec, labels=label_set, label_origin=f"the training file {train}")


def read_columns(
    path: str | os.PathLike[str],
    wanted: Mapping[str, Column | None],
    defaults: Mapping[str, tuple[str, ...]],
    *,
    header: bool | str | None = "auto",
    format: str = "auto",
    positions: Mapping[str, int] | None = None,
) -> list[tuple[int, dict[str, str]]]:
    """``(line, {key: text})`` for every row of a TSV/CSV/JSON-lines file, each ``wanted`` column picked as in
    :func:`resolve_columns` (all of them required). Used for generation pairs (``source``/``target``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    probe = TaskSpec(name=path.name, format=format, files={}, columns=Columns(text_a=0), labels=None, metrics=())
    fmt = file_format(probe, path)
    chosen, has_header = resolve_columns(path, fmt, wanted, defaults, header=header, positions=positions,
                                         required=tuple(wanted))  # fmt: skip
    if fmt != "jsonl" and has_header:  # header names -> indices, so every row is read by position
        names = [str(f).strip() for f in first_row(path, fmt)[1]]
        chosen = {k: names.index(v) if isinstance(v, str) else v for k, v in chosen.items()}
    # Ride on the task reader (field counts, JSON errors, line numbers) with a throwaway layout.
    spec = TaskSpec(name=path.name, format=fmt, files={}, labels=None, metrics=(),
                    columns=Columns(text_a=0, has_header=has_header))  # fmt: skip
    rows = []
    for line_no, row, _ in iter_task_rows(spec, path, "train"):
        values = {}
        for key, column in chosen.items():
            try:
                values[key] = str(row[column])
            except (IndexError, KeyError):
                raise DataFormatError(f"{path}:{line_no}: no {key} field {column!r} in this row") from None
        rows.append((line_no, values))
    if not rows:
        raise DataFormatError(f"{path}: the file holds no rows")
    return rows


def stream_texts(
    lines: Iterable[str],
    *,
    columns: Columns,
    format: str = "tsv",
    source: str = "<stdin>",
) -> Iterator[tuple[int, str, str | None]]:
    """``(line, text_a, text_b)`` for each row of unlabelled input, read lazily (stdin works line by line).

    JSON lines name their fields as ``columns`` does (else ``text``/``sentence``...). TSV/CSV input may start with
    a header holding the column names; without one, rows are read at ``columns``' indices, or, when those are
    names, as ``text_a[<TAB>text_b]``. Any further fields (a label column, say) are ignored.
    """
    if format not in ("tsv", "csv", "jsonl"):
        raise DataFormatError(f"{source}: unknown input format {format!r} (expected tsv, csv or jsonl)")
    pair = columns.text_b is not None
    numbered = ((n, line.rstrip("\r\n")) for n, line in enumerate(lines, start=1))
    numbered = ((n, line) for n, line in numbered if line.strip())
    if format == "jsonl":
        for line_no, line in numbered:
            obj = parse_json_object(line, source, line_no)
            a = _json_field(obj, columns.text_a, TEXT_NAMES, source, line_no)
            b = _json_field(obj, columns.text_b, PAIR_NAMES, source, line_no) if pair else None
            yield line_no, a, b
        return
    delimiter, quote = DELIMITED[format]
    rows = ((n, next(csv.reader([line], delimiter=delimiter, quotechar=quote or "\0"))) for n, line in numbered)
    index_a, index_b = None, None
    for line_no, row in rows:
        if index_a is None:
            names = [f.strip() for f in row]
            if isinstance(columns.text_a, str) and columns.text_a in names:  # a header row: read by name
                index_a = names.index(columns.text_a)
                index_b = names.index(columns.text_b) if pair and columns.text_b in names else None
                if pair and index_b is None:
                    raise DataFormatError(f"{source}:{line_no}: no column {columns.text_b!r} in the header")
                continue
            index_a = columns.text_a if isinstance(columns.text_a, int) else 0
            index_b = (columns.text_b if isinstance(columns.text_b, int) else 1) if pair else None
        try:
            a, b = row[index_a], None if index_b is None else row[index_b]
        except IndexError:
            need = max(i for i in (index_a, index_b) if i is not None) + 1
            raise DataFormatError(f"{source}:{line_no}: expected at least {need} {format.upper()} fields, "
                                  f"found {len(row)}") from None  # fmt: skip
        yield line_no, a, b


def _json_field(obj: dict, column: Column | None, names: tuple[str, ...], source: str, line_no: int) -> str:
    key = column if isinstance(column, str) and column in obj else next((n for n in names if n in obj), None)
    if key is None:
        raise DataFormatError(f"{source}:{line_no}: no field {column or names[0]!r} (fields: {', '.join(obj)})")
    return str(obj[key])
