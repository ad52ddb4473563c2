"""WikiSQL and CBANK JSONL readers; the shipped recipes run end to end through the CLI (finetune, reproduce)."""

from __future__ import annotations

import json

import pytest
import torch
from sdcup_testing import uer_state_dict, write_dataset

from alicemind.core.cli import main
from alicemind.core.cli.recipes import list_recipes, load_recipe
from alicemind.sdcup import SqlQuery
from alicemind.sdcup.data import Nl2SqlDataset, nl2sql_collator, read_examples, read_tables


def test_wikisql_and_cbank_records(tmp_path, tokenizer):
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"id": "w1", "header": ["name", "price"], "types": ["text", "real"], "rows": [["alpha", 10]]})
        + "\n" + json.dumps({"id": "c1", "header": ["城市", "价格"], "types": ["text", "real"], "rows": []}) + "\n"
    )  # fmt: skip
    wikisql = {"table_id": "w1", "question": "price of alpha", "sql": {"sel": 1, "agg": 5, "conds": [[0, 0, "alpha"]]}}
    cbank = {"table_id": "c1", "question": "价格大于10的城市", "sql_id": "c_7",
             "question_tok": ["价", "格", "大", "于", "10", "的", "城", "市"], "wvi_corenlp": [[4, 4]],
             "sql": {"sel": [0], "agg": [0], "conds": [[1, 0, "10", "10"]], "cond_conn_op": 0},
             "struct_question": [1, 1, 1, 1, 1, 2, 0, 0], "struct_label": [3, 3, 5, 5, 4, 0, 1, 1]}  # fmt: skip
    (tmp_path / "q.jsonl").write_text(json.dumps(wikisql) + "\n" + json.dumps(cbank, ensure_ascii=False) + "\n")
    w, c = read_examples(tmp_path / "q.jsonl", read_tables(tmp_path / "t.jsonl"))
    assert w.sql == SqlQuery([1], [1], [(0, 2, "alpha")], 1)  # WikiSQL AVG=5 -> ours 1; '=' (0) -> ours '==' (2)
    assert c.sql == SqlQuery([0], [0], [(1, 0, "10")], 0) and c.example_id == "c_7"
    assert c.struct == ([1, 1, 1, 1, 1, 2, 0, 0], [3, 3, 5, 5, 4, 0, 1, 1]) and c.value_spans == [[4, 4]]
    data = Nl2SqlDataset([w, c], tokenizer, 128)
    batch = nl2sql_collator(data)([0, 1])
    labels = batch["labels"]
    assert labels["sel"].tolist() == [[1], [0]] and labels["agg"].tolist() == [[1], [0]]
    assert labels["cond_op"].tolist() == [[2], [0]] and labels["conn"].tolist() == [1, 0]
    assert labels["cond_start"].tolist() == [[2], [4]] and labels["cond_end"].tolist() == [[2], [4]]
    (tmp_path / "op.jsonl").write_text(json.dumps(dict(wikisql, sql={"sel": 0, "agg": 0, "conds": [[0, 3, "x"]]})))
    with pytest.raises(ValueError, match="operator ids must be 0-2"):
        read_examples(tmp_path / "op.jsonl", read_tables(tmp_path / "t.jsonl"))
    bad = dict(cbank, struct_question=[9] * 8)
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: struct_question names a column outside 0..2"):
        read_examples(tmp_path / "bad.jsonl", read_tables(tmp_path / "t.jsonl"))


def test_every_recipe_states_its_source_and_loads():
    names = list_recipes("sdcup")
    assert set(names) == {"cbank", "wikisql", "pretrain", "pretrain-demo", "reproduce-sdcup-readme"}
    for name in names:
        assert load_recipe("sdcup", name) is not None
    cbank = load_recipe("sdcup", "cbank")
    assert (cbank["training"]["lr"], cbank["lr_encoder"], cbank["lr_decay"]) == (1e-3, 1e-5, 0.9)
    assert (cbank["training"]["per_device_batch_size"], cbank["training"]["num_epochs"]) == (24, 10)
    assert load_recipe("sdcup", "pretrain")["curriculum"]["pacing"] == "root"


def test_finetune_verb_with_the_wikisql_recipe(tmp_path, vocab_file, capsys):
    paths = write_dataset(tmp_path, train=16, dev=4)
    rc = main(["sdcup", "finetune", "--recipe", "wikisql", *(f"{k}={v}" for k, v in paths.items()),
               f"tokenizer={vocab_file}", "scratch_config=sdcup.test", f"output_dir={tmp_path / 'run'}",
               "training.num_epochs=1", "training.per_device_batch_size=8", "training.precision=fp32",
               "training.eval_every=null", "training.save_every=null", "--no-progress"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "finetune_results.json").read_text())
    assert set(saved["final"]) >= {"lf_acc", "sql_acc", "ex_acc"} and "ex_acc" in out
    run = json.loads((tmp_path / "run" / "run.json").read_text())  # the run identity core's Trainer records
    assert "alicemind-sdcup" in json.dumps(run) and "train_file" in json.dumps(run)
    # The same output folder with a different recipe value is a conflict, not a silent reuse.
    rc = main(["sdcup", "finetune", "--recipe", "wikisql", *(f"{k}={v}" for k, v in paths.items()),
               f"tokenizer={vocab_file}", "scratch_config=sdcup.test", f"output_dir={tmp_path / 'run'}",
               "lr_encoder=0.5", "training.num_epochs=1", "training.per_device_batch_size=8",
               "training.precision=fp32", "--no-progress"])  # fmt: skip
    assert rc == 2 and "lr_encoder" in capsys.readouterr().err


def test_reproduce_from_a_released_layout_checkpoint(tmp_path, tokenizer, capsys):
    data = tmp_path / "cbank"
    data.mkdir()
    paths = write_dataset(data, train=16, dev=4)
    paths["train_file"].rename(data / "0901_train_cbank.txt")
    paths["dev_file"].rename(data / "0901_test_cbank.txt")
    paths["tables"].rename(data / "cbank_table.json")
    release = tmp_path / "release"
    release.mkdir()
    torch.save(uer_state_dict(tokenizer.vocab_size, 32, 1, 64), release / "sdcup_base_model.bin-50000")
    rc = main(["sdcup", "reproduce", "reproduce-sdcup-readme", "--checkpoint", str(release), "--data-dir", str(data),
               "--output", str(tmp_path / "rep"), "--no-progress", f"tokenizer={tokenizer_dir(tmp_path, tokenizer)}",
               "training.num_epochs=1", "training.per_device_batch_size=8", "training.precision=fp32",
               "training.eval_every=null", "training.save_every=null"])  # fmt: skip
    assert rc == 0
    result = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert result["published"]["General"] == 88.7
    table = (tmp_path / "rep" / "results.md").read_text()
    assert "| sdcup.ch.base (published) | 88.7 | 90.2 | 89.2 | 85.2 |" in table
    assert f"| sdcup.ch.base (ours) | {result['ours']['General']:.1f} |" in table
    assert result["ours"]["General"] == pytest.approx(100 * result["metrics"]["lf_acc"])


def tokenizer_dir(tmp_path, tokenizer):
    folder = tmp_path / "tok"
    tokenizer.save_pretrained(folder)
    return folder
