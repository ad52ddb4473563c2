"""Line-oriented readers for TSV, CSV and JSON-lines files that report malformed input by file and line."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataFormatError(ValueError):
    """A data file does not have the expected layout; the message starts with ``path:line:``."""


def check_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, or raise FileNotFoundError naming it when it is not a readable file."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"data file {path} {what}")
    return path


def _decoded_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    # Decode line by line (not through a buffered text stream) so a bad byte is reported on its own line.
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}:{line_no}: not valid {encoding}: {e.reason}") from None
            if line_no == 1 and text.startswith("\ufeff"):  # a byte-order mark, as some CLUE dumps carry
                text = text[1:]
            yield line_no, text


def read_tsv(
    path: str | os.PathLike[str],
    *,
    has_header: bool = True,
    quotechar: str | None = None,
    strict: bool = True,
    encoding: str = "utf-8",
) -> Iterator[list[str]]:
    """Yield the rows of a tab-separated file as lists of fields (the header row, if any, is not yielded).

    With ``quotechar=None`` (the GLUE convention) quotes are ordinary characters. With ``strict`` every row must
    have as many fields as the first row (the header when ``has_header``); one that does not raises
    ``DataFormatError("path:line: ...")``. A missing file raises FileNotFoundError at call time.
    """
    numbered = iter_tsv_numbered(
        check_file(path), has_header=has_header, quotechar=quotechar, strict=strict, encoding=encoding
    )
    return (row for _, row in numbered)


def iter_tsv_numbered(
    path: Path, *, has_header: bool = True, quotechar: str | None = None, strict: bool = True, encoding: str = "utf-8"
) -> Iterator[tuple[int, list[str]]]:
    """Like :func:`read_tsv` but yields ``(line_number, row)`` pairs (for error messages further down)."""
    return iter_delimited_numbered(
        path, delimiter="\t", has_header=has_header, quotechar=quotechar, strict=strict, encoding=encoding
    )


def iter_delimited_numbered(
    path: Path,
    *,
    delimiter: str,
    has_header: bool = True,
    quotechar: str | None = None,
    strict: bool = True,
    encoding: str = "utf-8",
) -> Iterator[tuple[int, list[str]]]:
    """``(line_number, fields)`` of a ``delimiter``-separated file; the header row (if any) is not yielded.

    With ``strict`` a row whose field count differs from the first row's raises ``DataFormatError`` naming the
    file and line (and hinting at a mixed-up delimiter when the row holds another common one).
    """
    if quotechar is None:
        rows = _plain_rows(path, encoding, delimiter)
    else:
        rows = _quoted_rows(path, encoding, quotechar, delimiter)
    width = None
    for line_no, row in rows:
        if width is None:
            width = len(row)
            if has_header:
                continue
        elif strict and len(row) != width:
            raise DataFormatError(f"{path}:{line_no}: expected {width} {_NAMES.get(delimiter, repr(delimiter))}-"
                                  f"separated fields, found {len(row)}{_delimiter_hint(row, delimiter)}")  # fmt: skip
        yield line_no, row


_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon"}


def _delimiter_hint(row: list[str], delimiter: str) -> str:
    others = [name for d, name in _NAMES.items() if d != delimiter and any(d in field for field in row)]
    return f" (mixed delimiters? this line has {others[0]}s)" if others else ""


def read_header(
    path: Path, *, delimiter: str, quotechar: str | None = None, encoding: str = "utf-8"
) -> tuple[int, list[str]] | None:
    """``(line_number, fields)`` of the first non-blank row of a delimited file (None for an empty file)."""
    rows = _plain_rows(path, encoding, delimiter) if quotechar is None else _quoted_rows(path, encoding, quotechar,
                                                                                          delimiter)  # fmt: skip
    return next(iter(rows), None)


def _plain_rows(path: Path, encoding: str, delimiter: str = "\t") -> Iterator[tuple[int, list[str]]]:
    for line_no, line in _decoded_lines(path, encoding):
        line = line.rstrip("\r\n")
        if line:
            yield line_no, line.split(delimiter)


def _quoted_rows(path: Path, encoding: str, quotechar: str, delimiter: str = "\t") -> Iterator[tuple[int, list[str]]]:
    current = [0]

    def lines() -> Iterator[str]:
        for line_no, line in _decoded_lines(path, encoding):
            current[0] = line_no
            yield line

    reader = csv.reader(lines(), delimiter=delimiter, quotechar=quotechar, strict=True)
    try:
        for row in reader:
            if row:
                yield current[0], row
    except csv.Error as e:
        raise DataFormatError(f"{path}:{current[0]}: {e}") from None


def read_jsonl(path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Iterator[dict[str, Any]]:
    """Yield one JSON object per non-blank line; a line that is not a JSON object raises ``DataFormatError``.

    A missing file raises FileNotFoundError at call time.
    """
    numbered = iter_jsonl_numbered(check_file(path), encoding=encoding)
    return (obj for _, obj in numbered)


def iter_jsonl_numbered(path: Path, *, encoding: str = "utf-8") -> Iterator[tuple[int, dict[str, Any]]]:
    """Like :func:`read_jsonl` but yields ``(line_number, object)`` pairs."""
    for line_no, line in _decoded_lines(path, encoding):
        if not line.strip():
            continue
        yield line_no, parse_json_object(line, path, line_no)


def parse_json_object(line: str, source: object, line_no: int) -> dict[str, Any]:
    """One JSONL line as a dict; DataFormatError naming ``source:line_no`` for bad JSON or a non-object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{source}:{line_no}: invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{source}:{line_no}: expected a JSON object, found {type(obj).__name__}")
    return obj
