"""Bad input on the command line: exit status 2 and one clear line, nothing executed."""

from __future__ import annotations

import json

import pytest
import torch
from sdcup_testing import write_vocab

from alicemind.core.cli import main
from alicemind.sdcup import SdcupConfig, SdcupForNL2SQL, SdcupTokenizer


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    vocab = write_vocab(tmp_path)
    tok = SdcupTokenizer.from_vocab_file(vocab)
    model = SdcupForNL2SQL(SdcupConfig.from_pretrained("sdcup.test", vocab_size=tok.vocab_size))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("csv_text", "needle"),
    [("name,price,price\na,1,2\n", "duplicate header 'price' (columns 1 and 2)"),
     ("name,,price\na,b,1\n", "column 1 has an empty header"),
     ("", "empty CSV")],
)  # fmt: skip
def test_predict_refuses_bad_tables(model_dir, tmp_path, capsys, csv_text, needle):
    path = tmp_path / "t.csv"
    path.write_text(csv_text)
    _one_line_error(capsys, main(["sdcup", "predict", "--model", str(model_dir), "price of a", str(path)]), needle)


def test_predict_refuses_a_table_that_cannot_fit(model_dir, tmp_path, capsys):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(200)) + "\n")
    rc = main(["sdcup", "predict", "--model", str(model_dir), "price", str(path)])
    _one_line_error(capsys, rc, "more than max_seq_length 128")


def test_missing_files_and_bad_overrides(model_dir, tmp_path, capsys):
    rc = main(["sdcup", "evaluate", "--model", str(model_dir), str(tmp_path / "none.jsonl"), str(tmp_path / "t")])
    _one_line_error(capsys, rc, "file not found")
    _one_line_error(capsys, main(["sdcup", "convert", str(tmp_path / "nothing"), str(tmp_path / "o")]), "no checkpoint")
    rc = main(["sdcup", "pretrain", "--recipe", "pretrain-demo", "curriculum.pacing=fastest"])
    _one_line_error(capsys, rc, "fastest")
    _one_line_error(capsys, main(["sdcup", "pretrain", "--recipe", "pretrain-demo"]), "give tokenizer=")
    rc = main(["sdcup", "pretrain", "--recipe", "pretrain-demo", f"tokenizer={model_dir}"])
    _one_line_error(capsys, rc, "train_file=None is not a file")
    _one_line_error(capsys, main(["sdcup", "download", "sdcup.ch.base", "--offline"]), "sdcup")


def test_unknown_table_and_missing_sql(model_dir, tmp_path, capsys):
    tables = tmp_path / "tables.jsonl"
    tables.write_text(json.dumps({"id": "a", "header": ["x"], "types": ["text"], "rows": [["1"]]}) + "\n")
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"table_id": "b", "question": "x", "sql": {"sel": [0], "agg": [0]}}) + "\n")
    rc = main(["sdcup", "evaluate", "--model", str(model_dir), str(data), str(tables)])
    _one_line_error(capsys, rc, "table 'b' is not in the tables file")
    data.write_text(json.dumps({"table_id": "a", "question": "x"}) + "\n")
    rc = main(["sdcup", "evaluate", "--model", str(model_dir), str(data), str(tables)])
    _one_line_error(capsys, rc, "gold sql")


def test_help_explains_every_verb(capsys):
    assert main(["sdcup", "--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("convert", "download", "build-corpus", "pretrain", "finetune", "evaluate", "predict", "reproduce"):
        assert verb in out


def test_alicemind_list_shows_recipes_and_checkpoints(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("sdcup") :].split("\n\n")[0]
    assert "cbank" in block and "wikisql" in block and "pretrain" in block
    assert "sdcup.ch.base" in block and "sdcup.ch.large" in block


def test_convert_hf_refuses_a_foreign_folder_before_any_work(model_dir, tmp_path, capsys):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine\n")
    argv = ["sdcup", "convert", str(model_dir), str(tmp_path / "out"), "--model-class", "nl2sql", "--hf", str(foreign)]
    _one_line_error(capsys, main(argv), "notes")
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"] and not (tmp_path / "out").exists()
    assert main([*argv, "--overwrite"]) == 0
    assert (foreign / "model.safetensors").is_file()
