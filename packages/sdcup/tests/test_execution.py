"""SQLite execution: gold SQL returns the stored answers; execution vs logical-form accuracy; hostile input."""

from __future__ import annotations

import sqlite3

import pytest

from alicemind.sdcup import SqlQuery, Table, TableDatabase
from alicemind.sdcup.evaluate import evaluate_predictions, logical_form_match, sql_match
from alicemind.sdcup.sql import UnsupportedSqlError, build_sql, display_sql

CARS = Table(["model", "maker", "price", "seats"], ["text", "text", "real", "real"],
             [["B180", "benz", 30.5, 5], ["C260", "benz", 41.0, 5], ["X1", "bmw", 35.0, 5], ["i3", "bmw", 38.0, 4],
              ["Q2", "audi", 25.0, 5]], "cars")  # fmt: skip
CITIES = Table(["city", "country", "population"], ["text", "text", "real"],
               [["Paris", "France", 2.1], ["Lyon", "France", 0.5], ["Rome", "Italy", 2.8]], "cities")  # fmt: skip
# (question, gold, stored answer rows)
HAND_SET = [
    ("price of the C260", CARS, SqlQuery([2], [0], [(0, 2, "C260")], 0), [(41.0,)]),
    ("how many bmw models", CARS, SqlQuery([0], [4], [(1, 2, "bmw")], 0), [(2,)]),
    ("models under 36 with 5 seats", CARS, SqlQuery([0], [0], [(2, 1, "36"), (3, 2, "5")], 1),
     [("B180",), ("Q2",), ("X1",)]),
    ("average price of benz", CARS, SqlQuery([2], [1], [(1, 2, "Benz")], 0), [(35.75,)]),
    ("most expensive model", CARS, SqlQuery([0], [0], [(2, 5, 1)], 0), [("C260",)]),
    ("cities in france or italy over 1", CITIES, SqlQuery([0], [0], [(1, 2, "France"), (1, 2, "Italy")], 2),
     [("Lyon",), ("Paris",), ("Rome",)]),
    ("largest population", CITIES, SqlQuery([2], [2]), [(2.8,)]),
]  # fmt: skip


def test_gold_sql_executes_to_the_stored_answers():
    db = TableDatabase()
    for question, table, gold, answer in HAND_SET:
        assert db.execute(gold, table) == answer, question
    assert all(s.startswith("SELECT ") for s in db.executed)


def test_same_rows_in_another_form_is_execution_correct_not_logical_form_correct():
    golds = [g for _, _, g, _ in HAND_SET]
    tables = [t for _, t, _, _ in HAND_SET]
    preds = list(golds)
    preds[0] = SqlQuery([2], [0], [(2, 0, "41")], 0)  # price > 41: no rows (C260 costs exactly 41)
    preds[1] = SqlQuery([2], [4], [(1, 2, "bmw")], 0)  # COUNT(price) instead of COUNT(model): same count
    preds[4] = SqlQuery([0], [0], [(2, 0, "40")], 0)  # price > 40: the same single row as ORDER BY price DESC LIMIT 1
    preds[6] = SqlQuery([2], [2], [(1, 3, "Spain")], 0)  # a no-op filter: same MAX
    report = evaluate_predictions(preds, golds, tables)
    m = report.metrics()
    assert report.details[0]["pred_rows"] == [] and report.details[0]["gold_rows"] == [(41.0,)]
    assert m["ex_acc"] == pytest.approx(6 / 7) and m["lf_acc"] == pytest.approx(3 / 7)
    for i in (1, 4, 6):
        assert report.details[i]["pred_rows"] == report.details[i]["gold_rows"]
        assert not logical_form_match(preds[i], golds[i])
    assert m["sel_acc"] == pytest.approx(6 / 7) and m["wc_acc"] == pytest.approx(5 / 7)
    assert m["gold_not_executable"] == 0


def test_sql_acc_is_set_aware_and_coerces_text_operators():
    gold = SqlQuery([0, 2], [0, 1], [(1, 2, "bmw"), (3, 2, "5")], 1)
    reordered = SqlQuery([2, 0], [1, 0], [(3, 2, "5.0"), (1, 0, "BMW")], 1)
    assert sql_match(reordered, gold, CARS)  # set semantics, '>' on text counts as '==', 5.0 == 5, case folded
    assert not logical_form_match(reordered, gold)
    synonyms = {("maker", "bmw"): {"bayerische"}}
    assert sql_match(SqlQuery([0, 2], [0, 1], [(1, 2, "Bayerische"), (3, 2, "5")], 1), gold, CARS, synonyms)
    assert not sql_match(SqlQuery([0, 2], [0, 1], [(1, 3, "bmw"), (3, 2, "5")], 1), gold, CARS)


def test_statements_use_generated_names_and_bound_values():
    sql, params = build_sql(SqlQuery([2], [1], [(1, 2, "x'; DROP TABLE t; --"), (2, 0, "30")], 1), CARS, "t0")
    assert sql == "SELECT AVG(c2) FROM t0 WHERE c1 COLLATE NOCASE = ? AND c2 > ?"
    assert params == ["x'; DROP TABLE t; --", 30.0]
    shown = display_sql(SqlQuery([0], [0], [(1, 2, "o'neil")], 0), CARS)
    assert shown == 'SELECT "model" FROM "cars" WHERE "maker" COLLATE NOCASE = \'o\'\'neil\''
    with pytest.raises(UnsupportedSqlError, match="dummy column"):
        build_sql(SqlQuery([4], [0]), CARS)
    with pytest.raises(UnsupportedSqlError, match="COMPARE"):
        build_sql(SqlQuery([0], [6]), CARS)


def test_hostile_values_change_nothing_and_only_selects_run(tmp_path):
    path = tmp_path / "tables.db"
    db = TableDatabase(path)
    db.load(CARS)
    before = db.checksum()
    hostile = ["'; DROP TABLE t0; --", "x'); DELETE FROM t0; --", '"; UPDATE t0 SET c2 = 0; --']
    for value in hostile:
        assert db.execute(SqlQuery([0], [0], [(0, 2, value)], 0), CARS) == []
    assert db.checksum() == before
    assert all(s.startswith("SELECT ") for s in db.executed) and not db.denied
    # The authorizer refuses any write on the connection used for queries.
    with pytest.raises(sqlite3.DatabaseError, match="not authorized|readonly|query_only"):
        db.connection.execute("DROP TABLE t0")
    assert db.denied and db.checksum() == before
    db.close()
    # A file database is opened read-only for evaluation.
    ro = TableDatabase.open_read_only(path)
    assert ro.execute(SqlQuery([0], [4]), CARS) == [(5,)]
    with pytest.raises(sqlite3.DatabaseError):
        ro.connection.execute("DELETE FROM t0")
    ro.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT COUNT(*) FROM t0").fetchone() == (5,)
    check.close()


def test_numeric_column_holding_text_is_a_clear_error_not_a_crash():
    shop = Table(["item", "price"], ["text", "real"], [["pen", "cheap"]], "shop")
    report = evaluate_predictions([SqlQuery([0], [0])], [SqlQuery([0], [0])], [shop])
    assert (
        report.details[0]["gold_error"]
        == "TableError: table 'shop': column 'price' is typed real but row 0 holds 'cheap'"
    )
    assert report.metrics()["ex_acc"] == 0.0 and report.metrics()["gold_not_executable"] == 1
