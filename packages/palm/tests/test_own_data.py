"""``alicemind palm finetune --recipe seq2seq`` on your own source/target files (TSV, CSV, JSONL), via core's reader."""

from __future__ import annotations

import json

import pytest
import torch

from alicemind.core.cli import load_recipe, main
from alicemind.palm import PalmForConditionalGeneration

CHARS = "天气今明后晴雨多云风大小北京上海"
PAIRS = [("天气晴", "晴"), ("明天雨", "雨"), ("北京大风", "风"), ("上海多云", "云")]


@pytest.fixture
def tiny_folder(tmp_path, make_config):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS]
    config = make_config("sofa-zh", vocab_size=len(vocab), pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    PalmForConditionalGeneration(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return folder


def _run(folder, out, capsys, *extra: str) -> dict:
    args = ["palm", "finetune", "--recipe", "seq2seq", f"model={folder}", "data.max_target_length=6",
            "training.num_epochs=null", "+training.max_steps=2", "training.per_device_batch_size=4",
            "+training.progress_bar=false", "training.precision=fp32", "+training.device=cpu",
            f"training.output_dir={out}", "generation.num_beams=1", "generation.max_new_tokens=3", *extra]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_seq2seq_recipe_reads_csv_by_header_name(tiny_folder, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rows = "".join(f'"{s}",{t},x\n' for s, t in PAIRS)
    (data / "train.csv").write_text("document,summary,note\n" + rows * 2, encoding="utf-8")
    (data / "dev.csv").write_text("document,summary,note\n" + rows, encoding="utf-8")
    result = _run(tiny_folder, tmp_path / "run", capsys, f"data_dir={data}", "data.columns.source=document")
    assert set(result["metrics"]) >= {"bleu-1", "rouge-l"} and result["train_loss"] > 0
    predictions = (tmp_path / "run" / "final" / "eval_predictions.txt").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == len(PAIRS)  # the dev file, header skipped, target found as "summary"


def test_seq2seq_recipe_reads_jsonl_and_headerless_tsv(tiny_folder, tmp_path, capsys):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps({"input": s, "output": t}, ensure_ascii=False) + "\n" for s, t in PAIRS))
    assert _run(tiny_folder, tmp_path / "a", capsys, f"data.train={jsonl}")["train_loss"] > 0
    tsv = tmp_path / "plain.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS), encoding="utf-8")
    assert _run(tiny_folder, tmp_path / "b", capsys, f"data.train={tsv}", "data.valid=null")["metrics"] == {}


def test_seq2seq_bad_rows_are_one_line_errors(tiny_folder, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("source\ttarget\n天气\t晴\n明天,雨\n", encoding="utf-8")
    args = ["palm", "finetune", "--recipe", "seq2seq", f"model={tiny_folder}", f"data.train={bad}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bad}:3: expected 2 tab-separated fields, found 1 (mixed delimiters?" in err and "\n" not in err
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(json.dumps({"source": "天气", "sum": "晴"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main([*args[:-1], f"data.train={jsonl}"]) == 2
    assert "no target column found" in capsys.readouterr().err


def test_seq2seq_recipe_states_its_source():
    recipe = load_recipe("palm", "seq2seq")
    assert recipe["data"]["columns"] == {"source": None, "target": None} and recipe["data_dir"] is None
