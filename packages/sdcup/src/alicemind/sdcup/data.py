"""WikiSQL / CBANK JSONL readers, gold labels of the head, and the fine-tuning dataset and collator.

CBANK (``0901_*_cbank.txt``): ``sql = {sel: [..], agg: [..], conds: [[col, op, value, surface]], cond_conn_op}``
with the ops of :data:`~alicemind.sdcup.sql.COND_OPS`; ``question_tok`` and ``wvi_corenlp`` (value spans) when
present. WikiSQL (``*.jsonl`` + ``*.tables.jsonl``): ``sql = {sel: int, agg: int, conds: [[col, op, value]]}`` with
its own vocabularies (agg ``'' MAX MIN COUNT SUM AVG``, ops ``= > <``), mapped here to CBANK's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from alicemind.sdcup.sql import SqlQuery
from alicemind.sdcup.table import Table, TableQuestion, find_token_spans
from alicemind.sdcup.tokenization import SdcupTokenizer, SerializedInput, collate_serialized

WIKISQL_AGG_TO_OURS = {0: 0, 1: 2, 2: 3, 3: 4, 4: 5, 5: 1}
WIKISQL_OP_TO_OURS = {0: 2, 1: 0, 2: 1}


def _records(path: str | Path) -> Iterable[dict[str, Any]]:
    text = Path(path).read_text(encoding="utf-8").strip()
    if text.startswith("["):
        yield from json.loads(text)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from None


def read_tables(path: str | Path) -> dict[str, Table]:
    """Tables by id from a JSONL (or JSON list) file of ``{id, header, types, rows}`` records."""
    tables = {}
    for record in _records(path):
        table = Table.from_dict(record)
        tables[table.table_id] = table
    return tables


def parse_sql(record: dict[str, Any]) -> SqlQuery:
    """A ``sql`` record in either vocabulary (an int ``sel`` means WikiSQL)."""
    if isinstance(record.get("sel"), int):
        ops = [int(o) for _, o, *_ in record.get("conds") or []]
        if any(o not in WIKISQL_OP_TO_OURS for o in ops) or int(record["agg"]) not in WIKISQL_AGG_TO_OURS:
            raise ValueError(f"WikiSQL sql {record}: operator ids must be 0-2 (= > <) and agg ids 0-5")
        conds = [(c, WIKISQL_OP_TO_OURS[int(o)], v) for c, o, v, *_ in record.get("conds") or []]
        return SqlQuery([record["sel"]], [WIKISQL_AGG_TO_OURS[int(record["agg"])]], conds, 1 if conds else 0)
    return SqlQuery.from_dict(record)


def read_examples(path: str | Path, tables: dict[str, Table]) -> list[TableQuestion]:
    """Questions (with their SQL when annotated) of a WikiSQL or CBANK JSONL file."""
    examples = []
    for number, record in enumerate(_records(path), 1):
        table_id = str(record.get("table_id"))
        if table_id not in tables:
            raise ValueError(f"{path}:{number}: table {table_id!r} is not in the tables file")
        sql = parse_sql(record["sql"]) if record.get("sql") else None
        ex = TableQuestion(record["question"], tables[table_id], record.get("question_tok"), sql,
                           str(record.get("sql_id") or record.get("id") or number))  # fmt: skip
        ex.value_spans = record.get("wvi_corenlp")
        ex.struct = _struct(record, path, number, len(ex.table.header))
        examples.append(ex)
    return examples


def _struct(record: dict[str, Any], path, number: int, num_columns: int) -> tuple[list[int], list[int]] | None:
    """The given dependency targets (``struct_question``, ``struct_label``), checked against the tokens."""
    heads, labels = record.get("struct_question"), record.get("struct_label")
    if heads is None or labels is None:
        return None
    tokens = record.get("question_tok") or []
    if len(heads) != len(labels) or (tokens and len(heads) != len(tokens)):
        raise ValueError(f"{path}:{number}: struct_question/struct_label do not have one entry per question token")
    if any(not 0 <= h <= num_columns for h in heads):
        raise ValueError(f"{path}:{number}: struct_question names a column outside 0..{num_columns}")
    return [int(h) for h in heads], [int(v) for v in labels]


def value_span(tokens: Sequence[str], value: Any) -> tuple[int, int]:
    """Inclusive token span of ``value`` in the question, or (-100, -100) when it is not there."""
    spans = find_token_spans(tokens, str(value))
    return (spans[0][0], spans[0][1] - 1) if spans else (-100, -100)


def gold_labels(example: TableQuestion, encoded: SerializedInput) -> dict[str, list[int]]:
    """The head's targets: select columns/aggregations, connector, condition columns/ops/value spans."""
    sql = example.sql
    given = example.value_spans
    starts, ends = [], []
    for k, (_, _, value) in enumerate(sql.conds):
        if given and k < len(given) and given[k][0] is not None:
            s, e = given[k]
        else:
            s, e = value_span(encoded.question_tokens, value)
        starts.append(int(s))
        ends.append(int(e))
    return {"sel": sql.sel, "agg": sql.agg, "conn": [sql.conn], "cond_col": [c for c, _, _ in sql.conds],
            "cond_op": [o for _, o, _ in sql.conds], "cond_start": starts, "cond_end": ends}  # fmt: skip


class Nl2SqlDataset(torch.utils.data.Dataset):
    """Serialised examples and, when they carry SQL, their labels."""

    def __init__(self, examples: Sequence[TableQuestion], tokenizer: SdcupTokenizer, max_seq_length: int):
        self.examples = list(examples)
        self.encoded = [tokenizer.serialize(ex, max_seq_length) for ex in self.examples]
        self.labels = [gold_labels(ex, enc) if ex.sql is not None else None
                       for ex, enc in zip(self.examples, self.encoded, strict=True)]  # fmt: skip

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> int:
        return i


def nl2sql_collator(dataset: Nl2SqlDataset):
    """Batches of dataset indices -> model inputs with ``labels`` (a dict of padded tensors, -100 = none)."""

    def collate(indices: Sequence[int]) -> dict[str, Any]:
        batch: dict[str, Any] = collate_serialized([dataset.encoded[i] for i in indices])
        labels = [dataset.labels[i] for i in indices]
        if all(lab is not None for lab in labels):
            out = {}
            for key in labels[0]:
                width = max(1, max(len(lab[key]) for lab in labels))
                out[key] = torch.full((len(labels), width), -100, dtype=torch.long)
                for row, lab in enumerate(labels):
                    out[key][row, : len(lab[key])] = torch.tensor(lab[key], dtype=torch.long)
            out["conn"] = out["conn"][:, 0]
            batch["labels"] = out
        batch["example_index"] = torch.tensor(list(indices))
        return batch

    return collate
