"""A tiny NL2SQL fine-tune on generated tables reaching high execution accuracy; the CLI verbs over its output."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
from sdcup_testing import write_dataset, write_vocab

from alicemind.core.cli import main
from alicemind.sdcup import SdcupForNL2SQL, SdcupTokenizer, SqlQuery, Table, TableDatabase
from alicemind.sdcup.decoding import decode
from alicemind.sdcup.predicting import predict_one
from alicemind.sdcup.training import run_finetune


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("ft")
    paths = write_dataset(tmp, train=120, dev=30)
    recipe = {**{k: str(v) for k, v in paths.items()}, "tokenizer": str(write_vocab(tmp)),
              "scratch_config": "sdcup.test", "output_dir": str(tmp / "run"), "lr_encoder": 1e-3, "lr_decay": 1.0,
              "model_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "head_dropout": 0.0},
              "training": {"max_steps": 150, "lr": 3e-3, "per_device_batch_size": 16, "precision": "fp32",
                           "scheduler": "constant", "log_every": 50, "progress_bar": False, "seed": 1,
                           "save_every": 150}}  # fmt: skip
    return run_finetune(recipe, progress_bar=False), paths


def test_tiny_finetune_reaches_high_execution_accuracy(finetuned):
    result, _ = finetuned
    assert result.initial["ex_acc"] < 0.2
    assert result.final["ex_acc"] >= 0.9 and result.final["lf_acc"] >= 0.9
    assert result.final["wv_acc"] >= 0.9 and result.final["gold_not_executable"] == 0
    saved = json.loads((result.output_dir / "finetune_results.json").read_text())
    assert saved["final"]["ex_acc"] == result.final["ex_acc"]


def test_evaluate_verb_reports_every_accuracy(finetuned, tmp_path, capsys):
    result, paths = finetuned
    out = tmp_path / "eval.json"
    rc = main(["sdcup", "evaluate", "--model", str(result.model_dir), str(paths["dev_file"]), str(paths["tables"]),
               "--eg", "--output", str(out), "--database", str(tmp_path / "tables.db")])  # fmt: skip
    assert rc == 0
    with sqlite3.connect(tmp_path / "tables.db") as check:  # the three generated tables, loaded into the file
        assert check.execute("SELECT COUNT(*) FROM alicemind_tables").fetchone() == (3,)
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= {"lf_acc", "sql_acc", "ex_acc", "sel_acc", "agg_acc", "wc_acc", "wo_acc", "wv_acc"}
    assert metrics["ex_acc"] >= 0.9
    details = json.loads(out.read_text())["details"]
    assert len(details) == 30 and all(d["pred_error"] is None for d in details)


def _table_csv(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text("name,city,price,year\nalpha,paris,10,3\nbeta,rome,20,4\ngamma,oslo,30,5\n")
    return path


def test_predict_verb_outputs_sql_and_rows(finetuned, tmp_path, capsys):
    result, _ = finetuned
    rc = main(["sdcup", "predict", "--model", str(result.model_dir), "what is the price of beta",
               str(_table_csv(tmp_path))])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert lines[0] == 'SELECT "price" FROM "shop" WHERE "name" COLLATE NOCASE = \'beta\''
    out = json.loads(lines[-1])
    assert out["sql"] == "SELECT c2 FROM t0 WHERE c0 COLLATE NOCASE = ?" and out["parameters"] == ["beta"]
    assert out["rows"] == [[20.0]] and out["error"] is None


def test_hostile_and_columnless_questions(finetuned):
    result, _ = finetuned
    model = SdcupForNL2SQL.from_pretrained(result.model_dir)
    tokenizer = SdcupTokenizer.from_pretrained(result.model_dir)
    table = Table(["name", "city", "price", "year"], ["text", "text", "real", "real"],
                  [["alpha", "paris", 10.0, 3.0], ["beta", "rome", 20.0, 4.0]], "shop")  # fmt: skip
    question = "what is the price of '; DROP TABLE t; --"
    injection = predict_one(model, tokenizer, question, table)
    assert injection.sql.startswith("SELECT ") and "DROP" not in injection.sql and "'" not in injection.sql
    # Values are spans of the question, bound as parameters (here the quote character), never pasted in.
    assert injection.parameters and injection.sql.count("?") == len(injection.parameters)
    assert all(str(p).replace(" ", "") in question.lower().replace(" ", "") for p in injection.parameters)
    assert injection.error is None and injection.rows == []
    nothing = predict_one(model, tokenizer, "tell me something", table)
    assert nothing.warnings == ["the question names no column of the table"] and nothing.error is None
    # Through a database: a file, checksum before and after, only SELECTs run, the authorizer refused nothing.
    db = TableDatabase()
    db.load(table)
    before = db.checksum()
    for q in (injection.query, nothing.query, SqlQuery([0], [0], [(0, 2, "x'; DELETE FROM t0; --")], 0)):
        db.execute(q, table)
    assert db.checksum() == before and not db.denied and all(s.startswith("SELECT ") for s in db.executed)
    with pytest.raises(sqlite3.DatabaseError):
        db.connection.executescript("DROP TABLE t0;")
    assert db.checksum() == before


def test_execution_guided_decoding_skips_conditions_with_no_rows():
    table = Table(["name", "city"], ["text", "text"], [["alpha", "paris"], ["beta", "rome"]], "g")
    tokens = ["name", "in", "lima", "or", "rome"]
    n_cols = 3  # two columns + the dummy
    logits = {"slen": torch.tensor([[5.0, 0, 0, 0]]), "sc": torch.tensor([[5.0, 0, -5]]),
              "sa": torch.zeros(1, n_cols, 9), "cco": torch.tensor([[0, 5.0, 0]]),
              "wn": torch.tensor([[0, 5.0, 0, 0, 0, 0, 0]]), "wc": torch.tensor([[-5.0, 5.0, -9]]),
              "wo": torch.zeros(1, n_cols, 6), "wv_start": torch.full((1, n_cols, 5), -9.0),
              "wv_end": torch.full((1, n_cols, 5), -9.0)}  # fmt: skip
    logits["wo"][0, :, 2] = 5.0
    logits["wv_start"][0, 1, 2], logits["wv_end"][0, 1, 2] = 3.0, 3.0  # "lima": best span, no such row
    logits["wv_start"][0, 1, 4], logits["wv_end"][0, 1, 4] = 2.0, 2.0  # "rome": second best, has a row
    greedy = decode(logits, 0, tokens, table)
    assert greedy.conds == [(1, 2, "lima")] and greedy.sel == [0] and greedy.agg == [0]
    guided = decode(logits, 0, tokens, table, database=TableDatabase())
    assert guided.conds == [(1, 2, "rome")]


def test_convert_verb_and_hf_export(finetuned, tmp_path, capsys):
    result, _ = finetuned
    rc = main(["sdcup", "convert", str(result.model_dir), str(tmp_path / "enc"), "--model-class", "nl2sql",
               "--hf", str(tmp_path / "hf")])  # fmt: skip
    assert rc == 0
    assert "alicemind format" in capsys.readouterr().out
    again = SdcupForNL2SQL.from_pretrained(tmp_path / "enc")
    original = SdcupForNL2SQL.from_pretrained(result.model_dir)
    for (k, a), (_, b) in zip(again.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "bert"
