"""Tables and questions: validation, the dummy column, and the knowledge features computed from both.

The original reads its one-hot "knowledge" inputs (``bertindex_knowledge`` per question token, ``header_knowledge``
per column) from pre-computed fields whose generator was not released. :func:`question_knowledge` and
:func:`header_knowledge` compute features of the same shape from the question and the table, with the codes of
:data:`QUESTION_CODES` / :data:`HEADER_CODES` (chosen to match the codes seen in the released CBANK files where
their meaning is evident: 1-3 begin/inside/end of a cell-value mention, 4 a column-name mention).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DUMMY_COLUMN = "空列"  # appended to every header list (sqlova/utils/utils_wikisql.py:837)
COLUMN_TYPES = ("text", "real", "bool")
QUESTION_CODES = {"none": 0, "value_begin": 1, "value_inside": 2, "value_end": 3, "column": 4, "number": 5,
                  "compare": 7, "superlative": 11, "aggregate": 15}  # fmt: skip
HEADER_CODES = {"none": 0, "named": 1, "value_mentioned": 3}
# Cue words for the question features (Chinese as in CBANK, English as in WikiSQL).
COMPARE_CUES = ("大于", "小于", "高于", "低于", "超过", "少于", "多于", "不到", "不是", "more than", "less than",
            "greater", "fewer", "larger", "smaller", "above", "below", "over", "under")  # fmt: skip
SUPERLATIVE_CUES = ("最", "前", "top", "most", "least", "highest", "lowest", "first")
AGGREGATE_CUES = (
    "多少个",
    "几个",
    "几种",
    "哪几",
    "平均",
    "总共",
    "一共",
    "how many",
    "average",
    "total",
    "sum",
    "count",
)
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


class TableError(ValueError):
    """A table that cannot be encoded or loaded: empty or duplicate headers, cells that disagree with types."""


class TableTooLongError(ValueError):
    """Question plus serialised header is longer than the model's ``max_seq_length`` (nothing is truncated)."""


@dataclass
class Table:
    """``header`` names, ``types`` (text/real/bool per column) and ``rows`` (one list of cells per row)."""

    header: list[str]
    types: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    table_id: str = "t"

    def __post_init__(self) -> None:
        self.header = [str(h).strip() for h in self.header]
        if not self.header:
            raise TableError(f"table {self.table_id!r} has no columns")
        for i, name in enumerate(self.header):
            if not name:
                raise TableError(f"table {self.table_id!r}: column {i} has an empty header")
            if name == DUMMY_COLUMN:
                raise TableError(f"table {self.table_id!r}: header {name!r} is reserved for the dummy column")
        seen: dict[str, int] = {}
        for i, name in enumerate(self.header):
            if name in seen:
                raise TableError(f"table {self.table_id!r}: duplicate header {name!r} (columns {seen[name]} and {i})")
            seen[name] = i
        self.types = [str(t).lower() for t in self.types] or ["text"] * len(self.header)
        if len(self.types) != len(self.header):
            raise TableError(f"table {self.table_id!r}: {len(self.types)} types for {len(self.header)} columns")
        bad = [t for t in self.types if t not in COLUMN_TYPES]
        if bad:
            raise TableError(f"table {self.table_id!r}: unknown column type {bad[0]!r} (use {', '.join(COLUMN_TYPES)})")
        for r, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise TableError(
                    f"table {self.table_id!r}: row {r} has {len(row)} cells, header has {len(self.header)}"
                )

    @property
    def header_with_dummy(self) -> list[str]:
        """The header as the model sees it: every column, then the dummy column."""
        return [*self.header, DUMMY_COLUMN]

    def check_types(self) -> None:
        """Raise :class:`TableError` naming the first cell of a ``real`` column that is not a number."""
        for c, kind in enumerate(self.types):
            if kind != "real":
                continue
            for r, row in enumerate(self.rows):
                if row[c] is not None and row[c] != "" and to_number(row[c]) is None:
                    raise TableError(
                        f"table {self.table_id!r}: column {self.header[c]!r} is typed real but row {r} holds {row[c]!r}"
                    )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Table:
        """From a WikiSQL/CBANK table record (``id``, ``header``, ``types``, ``rows``)."""
        return cls(list(data["header"]), list(data.get("types") or []), [list(r) for r in data.get("rows") or []],
                   str(data.get("id") or data.get("table_id") or "t"))  # fmt: skip


def to_number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not numeric (thousands separators are accepted)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class TableQuestion:
    """A question over a table; ``question_tokens`` are the original's pre-split ``question_tok`` when given."""

    question: str
    table: Table
    question_tokens: list[str] | None = None
    sql: Any = None  # a :class:`~alicemind.sdcup.sql.SqlQuery` when annotated
    example_id: str | None = None
    value_spans: list | None = None  # gold [start, end] per condition value (CBANK ``wvi_corenlp``)
    struct: tuple[list[int], list[int]] | None = None  # given dependency heads and labels per question token

    def mentioned_columns(self) -> list[int]:
        """Columns whose name occurs in the question (case-insensitive)."""
        q = self.question.lower()
        return [i for i, name in enumerate(self.table.header) if name.lower() in q]


def _mark(codes: list[int], spans: Sequence[tuple[int, int]], code: int, *, bio: bool = False) -> None:
    for start, end in spans:  # [start, end) over tokens, only where nothing was marked yet
        for k in range(start, end):
            if codes[k]:
                continue
            if not bio:
                codes[k] = code
            elif k == start:
                codes[k] = QUESTION_CODES["value_begin"]
            else:
                codes[k] = QUESTION_CODES["value_end"] if k == end - 1 else QUESTION_CODES["value_inside"]


def find_token_spans(tokens: Sequence[str], phrase: str) -> list[tuple[int, int]]:
    """Token spans ``[start, end)`` whose joined text (``##`` continuations merged) equals ``phrase``."""
    target = re.sub(r"\s+", "", phrase.lower())
    if not target:
        return []
    pieces = [t[2:] if t.startswith("##") else t for t in (tok.lower() for tok in tokens)]
    spans = []
    for start in range(len(pieces)):
        text = ""
        for end in range(start, len(pieces)):
            text += pieces[end]
            if text == target:
                spans.append((start, end + 1))
                break
            if not target.startswith(text):
                break
    return spans


def question_knowledge(tokens: Sequence[str], table: Table) -> list[int]:
    """One code per question token (see :data:`QUESTION_CODES`): cell values, column names, numbers, cue words."""
    codes = [0] * len(tokens)
    values = {str(cell) for row in table.rows for cell in row if cell is not None and str(cell).strip()}
    for value in sorted(values, key=len, reverse=True):  # longest mention first
        _mark(codes, find_token_spans(tokens, value), 0, bio=True)
    for name in sorted(table.header, key=len, reverse=True):
        _mark(codes, find_token_spans(tokens, name), QUESTION_CODES["column"])
    for cues, code in ((COMPARE_CUES, "compare"), (SUPERLATIVE_CUES, "superlative"), (AGGREGATE_CUES, "aggregate")):
        for cue in cues:
            _mark(codes, find_token_spans(tokens, cue), QUESTION_CODES[code])
    for k, tok in enumerate(tokens):
        if not codes[k] and _NUMBER.match(tok.removeprefix("##")):
            codes[k] = QUESTION_CODES["number"]
    return codes


def header_knowledge(tokens: Sequence[str], table: Table) -> list[int]:
    """One code per column plus the dummy column (see :data:`HEADER_CODES`): named in the question, or one of its
    cells is."""
    codes = []
    for c, name in enumerate(table.header):
        cells = {str(row[c]) for row in table.rows if row[c] is not None and str(row[c]).strip()}
        if find_token_spans(tokens, name):
            codes.append(HEADER_CODES["named"])
        elif any(find_token_spans(tokens, cell) for cell in cells):
            codes.append(HEADER_CODES["value_mentioned"])
        else:
            codes.append(HEADER_CODES["none"])
    return [*codes, HEADER_CODES["none"]]
