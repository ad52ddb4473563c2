"""Logical-form accuracy, the original's ``sql_acc``, and execution accuracy on SQLite, per component as well.

* ``lf_acc``: the original's ``acc_lx``: same select columns and aggregations in order, same connector, the same
  conditions as a sorted list;
* ``sql_acc``: the original's selection metric (``comp_sql.com_conds`` / ``com_sels_with_split``): selects as a
  set of (column, aggregation), conditions as a set of (column, operator, normalised value) where a non-``!=``
  operator on a text or bool column counts as ``==``, values compared after normalisation and, when given, the
  synonyms of a ``value_name`` table (``cbank_value_name.csv``: column, normalised value, synonyms);
* ``ex_acc``: predicted and gold SQL executed on SQLite return the same rows (as a multiset).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alicemind.sdcup.sql import ORDER_OPS, SqlQuery, TableDatabase, execute_or_error
from alicemind.sdcup.table import Table, to_number

COMPONENTS = ("sel", "agg", "slen", "conn", "wn", "wc", "wo", "wv")


def normalise_value(value) -> str:
    """Lower-cased, whitespace-free text; numbers in one canonical form (``3.0`` == ``3``)."""
    number = to_number(value)
    if number is not None:
        return repr(float(number))
    return "".join(str(value).lower().split())


def read_value_names(path: str | Path) -> dict[tuple[str, str], set[str]]:
    """The synonyms table (tab-separated: column, normalised value, ``|``-separated synonyms; one header row)."""
    table: dict[tuple[str, str], set[str]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    for row in rows[1:]:
        if len(row) >= 3 and row[2].strip():
            key = (row[0].strip(), normalise_value(row[1]))
            table.setdefault(key, set()).update(normalise_value(s) for s in row[2].split("|"))
    return table


def _canonical(column: str, value, synonyms) -> str:
    norm = normalise_value(value)
    for (col, canon), names in synonyms.items():
        if col == column and (norm == canon or norm in names):
            return canon
    return norm


def logical_form_match(pred: SqlQuery, gold: SqlQuery) -> bool:
    """``acc_lx``: ordered selects and aggregations, connector, sorted conditions (values as written)."""
    key = lambda conds: sorted((c, o, str(v)) for c, o, v in conds)  # noqa: E731
    return (
        pred.sel == gold.sel and pred.agg == gold.agg and pred.conn == gold.conn and key(pred.conds) == key(gold.conds)
    )


def sql_match(pred: SqlQuery, gold: SqlQuery, table: Table, synonyms=None) -> bool:
    """The original's ``sql_acc`` comparison (set semantics, op coercion on text/bool, value synonyms)."""
    synonyms = synonyms or {}

    def conds(q: SqlQuery) -> set:
        out = set()
        for c, o, v in q.conds:
            if c < len(table.types) and table.types[c] in ("text", "bool") and o not in (3, *ORDER_OPS):
                o = 2
            out.add((c, o, _canonical(table.header[c] if c < len(table.header) else "", v, synonyms)))
        return out

    sels = lambda q: set(zip(q.sel, q.agg, strict=True))  # noqa: E731
    return sels(pred) == sels(gold) and conds(pred) == conds(gold)


def component_matches(pred: SqlQuery, gold: SqlQuery) -> dict[str, bool]:
    """Per component, as the original's ``cnt_sc`` ... ``cnt_wv`` counters."""
    pc, gc = sorted(pred.conds, key=lambda x: x[0]), sorted(gold.conds, key=lambda x: x[0])
    return {
        "sel": sorted(pred.sel) == sorted(gold.sel),
        "agg": sorted(zip(pred.sel, pred.agg, strict=True)) == sorted(zip(gold.sel, gold.agg, strict=True)),
        "slen": len(pred.sel) == len(gold.sel),
        "conn": pred.conn == gold.conn,
        "wn": len(pc) == len(gc),
        "wc": [c for c, _, _ in pc] == [c for c, _, _ in gc],
        "wo": [(c, o) for c, o, _ in pc] == [(c, o) for c, o, _ in gc],
        "wv": [(c, normalise_value(v)) for c, _, v in pc] == [(c, normalise_value(v)) for c, _, v in gc],
    }


@dataclass
class EvaluationReport:
    """Counts and accuracies; ``details`` has one entry per example (SQL, rows, errors)."""

    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    details: list[dict] = field(default_factory=list)

    def add(self, name: str, ok: bool) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(ok)

    def metrics(self) -> dict[str, float]:
        """``lf_acc``, ``sql_acc``, ``ex_acc`` and ``{component}_acc``, each in [0, 1]."""
        names = ("lf", "sql", "ex", *COMPONENTS)
        out = {f"{n}_acc": self.counts.get(n, 0) / self.total if self.total else 0.0 for n in names}
        out["gold_not_executable"] = float(self.counts.get("gold_error", 0))
        return out


def evaluate_predictions(
    predictions: Sequence[SqlQuery | None],
    golds: Sequence[SqlQuery],
    tables: Sequence[Table],
    *,
    database: TableDatabase | None = None,
    synonyms=None,
) -> EvaluationReport:
    """Score ``predictions`` against ``golds`` (same order); each table is loaded into ``database`` (in memory by
    default) and both queries are executed there."""
    db = database or TableDatabase()
    report = EvaluationReport(total=len(golds))
    for pred, gold, table in zip(predictions, golds, tables, strict=True):
        gold_rows, gold_error = execute_or_error(db, gold, table)
        report.add("gold_error", gold_error is not None)
        entry = {"gold": gold.to_dict(), "gold_rows": gold_rows, "gold_error": gold_error}
        if pred is None:
            report.details.append({**entry, "pred": None})
            continue
        pred_rows, pred_error = execute_or_error(db, pred, table)
        report.add("lf", logical_form_match(pred, gold))
        report.add("sql", sql_match(pred, gold, table, synonyms))
        report.add("ex", gold_error is None and pred_error is None and pred_rows == gold_rows)
        for name, ok in component_matches(pred, gold).items():
            report.add(name, ok)
        report.details.append({**entry, "pred": pred.to_dict(), "pred_rows": pred_rows, "pred_error": pred_error})
    return report
