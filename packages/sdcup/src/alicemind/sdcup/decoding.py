"""From head logits to :class:`~alicemind.sdcup.sql.SqlQuery`: greedy, or execution-guided on SQLite.

Execution guidance (SQLova's EG): select aggregations are taken in score order until the query executes to a
non-empty, non-NULL result; condition candidates (column, operator, value span) are tried in score order and
kept only when the query with that condition returns rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alicemind.sdcup.sql import ORDER_OPS, SqlQuery, TableDatabase, execute_or_error
from alicemind.sdcup.table import Table


def join_tokens(tokens: Sequence[str]) -> str:
    """Question tokens back to text: ``##`` pieces glued, CJK glued, a space between two Latin words."""
    out = ""
    for tok in tokens:
        if tok.startswith("##"):
            out += tok[2:]
        elif out and out[-1].isascii() and out[-1].isalnum() and tok[:1].isascii() and tok[:1].isalnum():
            out += " " + tok
        else:
            out += tok
    return out


def best_spans(start: torch.Tensor, end: torch.Tensor, length: int, top: int = 1, max_len: int = 16) -> list:
    """The ``top`` spans ``(s, e)`` (inclusive, s <= e < s + max_len) by start + end logit."""
    s, e = start[:length].float(), end[:length].float()
    grid = s[:, None] + e[None, :]
    idx = torch.arange(length)
    allowed = (idx[None, :] >= idx[:, None]) & (idx[None, :] - idx[:, None] < max_len)
    grid = grid.masked_fill(~allowed, float("-inf"))
    flat = grid.flatten().topk(min(top, int(allowed.sum()))).indices
    return [(int(i) // length, int(i) % length) for i in flat]


def _value(tokens: Sequence[str], span: tuple[int, int]) -> str:
    return join_tokens(tokens[span[0] : span[1] + 1])


def decode(
    logits: dict[str, torch.Tensor],
    row: int,
    question_tokens: Sequence[str],
    table: Table,
    *,
    database: TableDatabase | None = None,
    beam: int = 4,
) -> SqlQuery:
    """The query of batch row ``row``; with ``database``, execution-guided over ``beam`` candidates per slot."""
    n_cols, n_q = len(table.header), len(question_tokens)  # the dummy column (index n_cols) is never chosen
    pick = {k: v[row].detach().float().cpu() for k, v in logits.items()}
    n_sel = int(pick["slen"].argmax()) + 1
    sel_order = [int(i) for i in pick["sc"][:n_cols].argsort(descending=True)]
    sel = sel_order[: min(n_sel, n_cols)]
    agg = [int(pick["sa"][c].argmax()) for c in sel]
    conn = int(pick["cco"].argmax())
    n_cond = min(int(pick["wn"].argmax()), n_cols)
    cond_order = [int(i) for i in pick["wc"][:n_cols].argsort(descending=True)]

    def cond(c: int, op: int, span: tuple[int, int]) -> tuple[int, int, str]:
        return (c, op, _value(question_tokens, span))

    if database is None:
        conds = []
        for c in cond_order[:n_cond]:
            op = int(pick["wo"][c].argmax())
            conds.append(cond(c, op, best_spans(pick["wv_start"][c], pick["wv_end"][c], n_q)[0]))
        return SqlQuery(sel, agg, conds, conn)

    agg = [_guided_agg(database, table, c, pick["sa"][c], beam) for c in sel]
    conds: list[tuple[int, int, str]] = []
    for c in cond_order[: max(n_cond, 0) + beam] if n_cond else []:
        if len(conds) == n_cond:
            break
        ops = [int(o) for o in pick["wo"][c].argsort(descending=True)[:2]]
        for op in ops:
            spans = best_spans(pick["wv_start"][c], pick["wv_end"][c], n_q, top=beam)
            found = next((cond(c, op, s) for s in spans if _has_rows(database, table, sel, agg, cond(c, op, s))), None)
            if found is not None:
                conds.append(found)
                break
    return SqlQuery(sel, agg, conds, conn)


def _has_rows(db: TableDatabase, table: Table, sel, agg, condition) -> bool:
    if condition[1] in ORDER_OPS:
        return True  # an ORDER BY never empties a result
    rows, error = execute_or_error(db, SqlQuery(sel, agg, [condition], 0), table)
    return error is None and bool(rows) and any(v is not None for r in rows for v in r)


def _guided_agg(db: TableDatabase, table: Table, column: int, scores: torch.Tensor, beam: int) -> int:
    order = [int(a) for a in scores.argsort(descending=True)[:beam]]
    for a in order:
        rows, error = execute_or_error(db, SqlQuery([column], [a]), table)
        if error is None and rows and all(v is not None for r in rows for v in r):
            return a
    return order[0]
