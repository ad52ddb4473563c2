"""The logical form (SQLova/CBANK vocabularies), its SQL with bound parameters, and execution on SQLite.

Tables are loaded into SQLite (the standard library's ``sqlite3``) under generated names (``t0``, ``t1`` ...)
with columns ``c0 .. cN``: neither header text nor question text is ever part of a statement; values are always
bound parameters. While queries run, an authorizer allows reading only (SELECT, column reads, functions) and
``PRAGMA query_only`` is on; a file database is opened read-only.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alicemind.sdcup.table import DUMMY_COLUMN, Table, TableError, to_number

# Seq2SQL_v1 vocabularies (models-language.md §5.1): aggregation per select column, condition operators.
AGG_OPS = ("", "AVG", "MAX", "MIN", "COUNT", "SUM", "COMPARE", "GROUP BY", "SAME")
COND_OPS = (">", "<", "==", "!=", "ASC", "DESC")
CONN_OPS = ("", "AND", "OR")
_SQL_AGG = {1: "AVG", 2: "MAX", 3: "MIN", 4: "COUNT", 5: "SUM"}
_SQL_OP = {0: ">", 1: "<", 2: "=", 3: "!="}
ORDER_OPS = (4, 5)


class UnsupportedSqlError(ValueError):
    """A logical form with no SQL form (CBANK's COMPARE / GROUP BY / SAME aggregations, the dummy column)."""


@dataclass
class SqlQuery:
    """``sel``/``agg``: select columns and their aggregation ids; ``conds``: (column, operator id, value);
    ``conn``: connector id (0 none, 1 AND, 2 OR)."""

    sel: list[int]
    agg: list[int]
    conds: list[tuple[int, int, Any]] = field(default_factory=list)
    conn: int = 0

    def __post_init__(self) -> None:
        self.sel, self.agg = [int(s) for s in self.sel], [int(a) for a in self.agg]
        self.conds = [(int(c), int(o), v) for c, o, v, *_ in self.conds]
        if len(self.sel) != len(self.agg):
            raise ValueError(f"{len(self.sel)} select columns but {len(self.agg)} aggregations")
        if not self.sel:
            raise ValueError("a query selects at least one column")

    def to_dict(self) -> dict[str, Any]:
        return {"sel": self.sel, "agg": self.agg, "conds": [list(c) for c in self.conds], "cond_conn_op": self.conn}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SqlQuery:
        """From a CBANK ``sql`` record (lists ``sel``/``agg``, ``cond_conn_op``)."""
        sel, agg = data["sel"], data["agg"]
        sel, agg = (sel if isinstance(sel, list) else [sel]), (agg if isinstance(agg, list) else [agg])
        return cls(sel, agg, [tuple(c) for c in data.get("conds") or []], int(data.get("cond_conn_op", 0) or 0))


def _check_columns(query: SqlQuery, table: Table) -> None:
    n = len(table.header)
    for c in [*query.sel, *(c for c, _, _ in query.conds)]:
        if c == n:
            raise UnsupportedSqlError(f"the query uses the dummy column {DUMMY_COLUMN!r}")
        if not 0 <= c < n:
            raise UnsupportedSqlError(f"column {c} is not in the table ({n} columns)")
    for a in query.agg:
        if a not in (0, *_SQL_AGG):
            raise UnsupportedSqlError(f"aggregation {AGG_OPS[a] if 0 <= a < len(AGG_OPS) else a!r} has no SQL form")
    for _, o, _ in query.conds:
        if not 0 <= o < len(COND_OPS):
            raise UnsupportedSqlError(f"operator id {o} is not one of {COND_OPS}")


def _bind(value: Any, kind: str) -> Any:
    if kind == "real":
        number = to_number(value)
        if number is not None:
            return number
    return str(value)


def build_sql(query: SqlQuery, table: Table, name: str = "t", *, columns: list[str] | None = None) -> tuple[str, list]:
    """``(statement, parameters)``; ``columns`` are the SQL names of the table's columns (``c0`` .. by default,
    or quoted headers for display). Values are only ever parameters."""
    _check_columns(query, table)
    cols = columns or [f"c{i}" for i in range(len(table.header))]
    picks = [cols[s] if a == 0 else f"{_SQL_AGG[a]}({cols[s]})" for s, a in zip(query.sel, query.agg, strict=True)]
    where, params, order, limit = [], [], [], None
    for c, o, v in query.conds:
        if o in ORDER_OPS:
            order.append(f"{cols[c]} {COND_OPS[o]}")
            k = to_number(v)
            limit = max(1, int(k)) if k is not None and k == int(k) else 1
            continue
        collate = " COLLATE NOCASE" if table.types[c] != "real" else ""
        where.append(f"{cols[c]}{collate} {_SQL_OP[o]} ?")
        params.append(_bind(v, table.types[c]))
    sql = f"SELECT {', '.join(picks)} FROM {name}"
    if where:
        sql += " WHERE " + f" {'OR' if query.conn == 2 else 'AND'} ".join(where)
    if order:
        sql += " ORDER BY " + ", ".join(order) + f" LIMIT {int(limit)}"
    return sql, params


def display_sql(query: SqlQuery, table: Table) -> str:
    """The query for people: header names quoted, values inlined as quoted literals (never executed)."""
    quoted = ['"' + h.replace('"', '""') + '"' for h in table.header]
    sql, params = build_sql(query, table, '"' + table.table_id.replace('"', '""') + '"', columns=quoted)
    for p in params:
        literal = repr(p) if isinstance(p, float) else "'" + str(p).replace("'", "''") + "'"
        sql = sql.replace("?", literal, 1)
    return sql


_READ_ONLY_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}


def _only_reads(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ONLY_ACTIONS else sqlite3.SQLITE_DENY


class TableDatabase:
    """Tables in one SQLite database (``":memory:"`` or a file) and read-only execution of queries over them."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self.connection = sqlite3.connect(self.path)
        self.names: dict[str, str] = {}
        self.executed: list[str] = []  # every statement run by :meth:`execute`, for audit
        self.denied: list[tuple] = []  # actions the authorizer refused

    @classmethod
    def open_read_only(cls, path: str | Path) -> TableDatabase:
        """Open an existing database file read-only (``mode=ro``); its table map is read back."""
        db = cls.__new__(cls)
        db.path, db.executed, db.denied = str(path), [], []
        db.connection = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        rows = db.connection.execute("SELECT table_id, name FROM alicemind_tables").fetchall()
        db.names = dict(rows)
        db._seal()
        return db

    def load(self, table: Table) -> str:
        """Create and fill the table (type-checked first); returns its SQL name. Loading is refused once sealed."""
        if table.table_id in self.names:
            return self.names[table.table_id]
        table.check_types()
        name = f"t{len(self.names)}"
        kinds = ["REAL" if t == "real" else "TEXT" for t in table.types]
        cols = ", ".join(f"c{i} {k}" for i, k in enumerate(kinds))
        values = [[_bind(v, t) if v not in (None, "") else None for v, t in zip(r, table.types, strict=True)]
                  for r in table.rows]  # fmt: skip
        with self.connection:
            self.connection.execute(f"CREATE TABLE {name} ({cols})")
            marks = ", ".join("?" * len(kinds))
            self.connection.executemany(f"INSERT INTO {name} VALUES ({marks})", values)
            self.connection.execute("CREATE TABLE IF NOT EXISTS alicemind_tables (table_id TEXT, name TEXT)")
            self.connection.execute("INSERT INTO alicemind_tables VALUES (?, ?)", (table.table_id, name))
        self.names[table.table_id] = name
        return name

    def _seal(self) -> None:
        # The authorizer itself would deny the PRAGMA: lift it for that one statement.
        self.connection.set_authorizer(None)
        self.connection.execute("PRAGMA query_only = ON")
        self.connection.set_authorizer(self._authorize)

    def _authorize(self, action: int, *args: Any) -> int:
        verdict = _only_reads(action)
        if verdict != sqlite3.SQLITE_OK:
            self.denied.append((action, *args))
        return verdict

    def execute(self, query: SqlQuery, table: Table) -> list[tuple]:
        """Rows of ``query`` over ``table`` (loaded on first use), as a sorted list for set comparison."""
        if table.table_id not in self.names:
            self.connection.set_authorizer(None)
            self.connection.execute("PRAGMA query_only = OFF")  # loading writes; queries below do not
            try:
                self.load(table)
            finally:
                self._seal()
        sql, params = build_sql(query, table, self.names[table.table_id])
        self._seal()
        self.executed.append(sql)
        rows = self.connection.execute(sql, params).fetchall()
        return sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)

    def checksum(self) -> str:
        """sha256 of the full SQL dump: equal before and after means nothing was changed."""
        self.connection.set_authorizer(None)
        try:
            dump = "\n".join(self.connection.iterdump())
        finally:
            self._seal()
        return hashlib.sha256(dump.encode()).hexdigest()

    def close(self) -> None:
        self.connection.close()


def _normal(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    return value


def execute_or_error(db: TableDatabase, query: SqlQuery, table: Table) -> tuple[list[tuple] | None, str | None]:
    """``(rows, None)`` or ``(None, reason)`` for a query that cannot run (unsupported form, bad table)."""
    try:
        return db.execute(query, table), None
    except (UnsupportedSqlError, TableError, sqlite3.Error) as err:
        return None, f"{type(err).__name__}: {err}"


__all__ = [
    "AGG_OPS",
    "COND_OPS",
    "CONN_OPS",
    "SqlQuery",
    "TableDatabase",
    "TableError",
    "UnsupportedSqlError",
    "build_sql",
    "display_sql",
    "execute_or_error",
]
