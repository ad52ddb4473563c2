"""Prediction and evaluation: questions in, SQL (with bound parameters) and its rows out."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alicemind.core.training import move_to_device
from alicemind.sdcup.decoding import decode
from alicemind.sdcup.evaluate import EvaluationReport, evaluate_predictions
from alicemind.sdcup.sql import SqlQuery, TableDatabase, build_sql, display_sql, execute_or_error
from alicemind.sdcup.table import Table, TableQuestion, to_number
from alicemind.sdcup.tokenization import SdcupTokenizer, collate_serialized


@torch.no_grad()
def predict_queries(model, tokenizer: SdcupTokenizer, examples: Sequence[TableQuestion], max_seq_length: int, *,
                    database: TableDatabase | None = None, batch_size: int = 32) -> list[SqlQuery]:  # fmt: skip
    """One SqlQuery per example (execution-guided when ``database`` is given)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[SqlQuery] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        encoded = [tokenizer.serialize(ex, max_seq_length) for ex in chunk]
        logits = model(**move_to_device(collate_serialized(encoded), device)).logits
        for row, (ex, enc) in enumerate(zip(chunk, encoded, strict=True)):
            out.append(decode(logits, row, enc.question_tokens, ex.table, database=database))
    return out


def evaluate_model(model, tokenizer, examples: Sequence[TableQuestion], max_seq_length: int, *,
                   execution_guided: bool = False, synonyms=None, database: str | Path | None = None
                   ) -> EvaluationReport:  # fmt: skip
    """Predict every example and score it (logical form, sql_acc, execution on SQLite: in memory, or the file
    ``database``)."""
    db = TableDatabase(database or ":memory:")
    preds = predict_queries(model, tokenizer, examples, max_seq_length, database=db if execution_guided else None)
    return evaluate_predictions(preds, [ex.sql for ex in examples], [ex.table for ex in examples], database=db,
                                synonyms=synonyms)  # fmt: skip


def read_table_csv(path: str | Path, table_id: str | None = None) -> Table:
    """A CSV with a header row; a column whose every non-empty cell is a number is typed ``real``."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty CSV (a header row is needed)")
    header, body = rows[0], rows[1:]
    types = []
    for c in range(len(header)):
        cells = [r[c] for r in body if c < len(r) and r[c].strip()]
        types.append("real" if cells and all(to_number(v) is not None for v in cells) else "text")
    return Table(header, types, body, table_id or Path(path).stem)


@dataclass
class Prediction:
    """The predicted query, the executed statement and parameters, its rows, and notes for the user."""

    query: SqlQuery
    sql: str
    parameters: list
    display: str
    rows: list | None
    error: str | None
    warnings: list[str] = field(default_factory=list)


def predict_one(model, tokenizer, question: str, table: Table, *, execution_guided: bool = False) -> Prediction:
    """Predict and execute one question over ``table`` (loaded into an in-memory SQLite)."""
    example = TableQuestion(question, table)
    db = TableDatabase()
    query = predict_queries(model, tokenizer, [example], model.config.max_seq_length,
                            database=db if execution_guided else None)[0]  # fmt: skip
    warnings = [] if example.mentioned_columns() else ["the question names no column of the table"]
    rows, error = execute_or_error(db, query, table)
    try:
        sql, params = build_sql(query, table, db.names.get(table.table_id, "t"))
        shown = display_sql(query, table)
    except ValueError as err:
        sql, params, shown = "", [], f"-- not expressible: {err}"
    return Prediction(query, sql, params, shown, rows, error, warnings)
