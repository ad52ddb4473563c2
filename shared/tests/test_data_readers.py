"""Readers, GLUE/CLUE task layouts and corpus reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alicemind.core.data import (
    DataFormatError,
    UnknownTaskError,
    get_task,
    list_tasks,
    load_task_examples,
    read_documents,
    read_jsonl,
    read_tsv,
)


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    return _write(path, [json.dumps(r, ensure_ascii=False) for r in rows])


def test_read_tsv_keeps_quotes_and_reports_bad_rows(tmp_path):
    path = _write(tmp_path / "a.tsv", ["x\ty", 'he said "hi\tthere', "1\t2"])
    assert list(read_tsv(path)) == [['he said "hi', "there"], ["1", "2"]]
    assert list(read_tsv(path, has_header=False))[0] == ["x", "y"]
    bad = _write(tmp_path / "b.tsv", ["x\ty", "1\t2", "only-one"])
    with pytest.raises(DataFormatError, match=r"b\.tsv:3: expected 2 tab-separated fields, found 1"):
        list(read_tsv(bad))
    assert list(read_tsv(bad, strict=False))[-1] == ["only-one"]


def test_read_tsv_quoted_mode_and_encoding_errors(tmp_path):
    path = _write(tmp_path / "q.tsv", ["a\tb", '"multi\tfield"\tz'])
    assert list(read_tsv(path, quotechar='"')) == [["multi\tfield", "z"]]
    broken = _write(tmp_path / "broken.tsv", ["a\tb", '"unterminated\tz'])
    with pytest.raises(DataFormatError, match=r"broken\.tsv:2:"):
        list(read_tsv(broken, quotechar='"'))
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(b"a\tb\nok\tfine\ncaf\xe9\tx\n")
    with pytest.raises(DataFormatError, match=r"latin\.tsv:3: not valid utf-8"):
        list(read_tsv(latin))


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    path = _write(tmp_path / "d.json", ['{"a": 1}', "", '{"a": 2}'])
    assert list(read_jsonl(path)) == [{"a": 1}, {"a": 2}]
    bad = _write(tmp_path / "bad.json", ['{"a": 1}', '{"a": '])
    with pytest.raises(DataFormatError, match=r"bad\.json:2: invalid JSON"):
        list(read_jsonl(bad))
    not_obj = _write(tmp_path / "list.json", ["[1, 2]"])
    with pytest.raises(DataFormatError, match=r"list\.json:1: expected a JSON object, found list"):
        list(read_jsonl(not_obj))


def test_missing_file_raises_at_call_time(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_tsv(tmp_path / "nope.tsv")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_jsonl(tmp_path / "nope.json")


def test_registry_covers_glue_and_clue():
    # Families may register more tasks (structbert's demo adds one), so the built-ins must be a subset.
    assert set(list_tasks()) >= {
        "cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli",
        "afqmc", "tnews", "iflytek", "cmnli", "ocnli", "csl", "cluewsc2020",
    }  # fmt: skip
    assert get_task("SST2") is get_task("sst-2") is get_task("sst_2")
    assert get_task("ocnli_public").name == "ocnli"
    assert get_task("sts-b").is_regression and get_task("sts-b").num_labels == 1
    assert get_task("tnews").labels == tuple(str(i) for i in range(100, 117))
    assert get_task("iflytek").num_labels == 119
    with pytest.raises(UnknownTaskError, match=r"unknown task 'mnlii'.*Did you mean mnli.*Known tasks: afqmc"):
        get_task("mnlii")


# Headers and rows as the GLUE distribution lays them out.
def test_glue_layouts(tmp_path):
    cola = tmp_path / "CoLA"
    _write(cola / "train.tsv", ["gj04\t1\t\tThe sailors rode the breeze.", "gj04\t0\t*\tThe more we study."])
    _write(cola / "test.tsv", ["index\tsentence", "0\tBill whistled past the house."])
    train = load_task_examples("cola", cola, "train")
    assert [(e.text_a, e.label) for e in train] == [("The sailors rode the breeze.", "1"), ("The more we study.", "0")]
    test = load_task_examples("cola", cola, "test")
    assert test[0].guid == "0" and test[0].text_a == "Bill whistled past the house." and test[0].label is None

    mnli = tmp_path / "MNLI"
    head = "index\tpromptID\tpairID\tgenre\ts1_bin\ts2_bin\ts1_parse\ts2_parse\tsentence1\tsentence2"
    _write(
        mnli / "train.tsv",
        [head + "\tlabel1\tgold_label", "7\tp\tq\tfiction\tb\tb\tp\tp\tA man.\tA person.\tx\tneutral"],
    )
    dev = head + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
    _write(mnli / "dev_mismatched.tsv", [dev, '3\tp\tq\tg\tb\tb\tp\tp\tIt\'s "ok".\tFine.\te\te\tc\te\te\tentailment'])
    _write(mnli / "test_matched.tsv", [head, "11\tp\tq\tg\tb\tb\tp\tp\tHi.\tHello."])
    _write(mnli / "diagnostic.tsv", ["index\tsentence1\tsentence2", "0\tThe cat sat.\tThe cat did not sit."])
    ex = load_task_examples("mnli", mnli, "train")[0]
    assert (ex.guid, ex.text_a, ex.text_b, ex.label) == ("7", "A man.", "A person.", "neutral")
    assert load_task_examples("mnli", mnli, "dev_mismatched")[0].text_a == 'It\'s "ok".'
    assert load_task_examples("mnli", mnli, "test_matched")[0].label is None
    ax = load_task_examples("mnli", mnli, "ax")[0]
    assert (ax.text_a, ax.text_b, ax.label) == ("The cat sat.", "The cat did not sit.", None)
    assert get_task("mnli").label_id("neutral") == 2

    stsb = tmp_path / "STS-B"
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    _write(stsb / "dev.tsv", [header, "0\tmain\tf\t2012\t1\tnone\tnone\tA plane.\tAn air plane.\t5.000"])
    assert load_task_examples("sts-b", stsb, "dev")[0].label == 5.0

    mrpc = tmp_path / "MRPC"
    _write(mrpc / "train.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t70\t71\tHe left.\tHe went away."])
    assert load_task_examples("mrpc", mrpc, "train")[0].text_b == "He went away."

    qqp = tmp_path / "QQP"
    _write(qqp / "train.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "5\t1\t2\tWhy?\tHow?\t0", "6\t3"])
    _write(qqp / "test.tsv", ["id\tquestion1\tquestion2", "0\tWho?\tWhom?"])
    assert [e.guid for e in load_task_examples("qqp", qqp, "train")] == ["5"]  # the truncated row is skipped
    assert load_task_examples("qqp", qqp, "test")[0].text_b == "Whom?"


def test_glue_errors_name_the_problem(tmp_path):
    rte = tmp_path / "RTE"
    _write(rte / "train.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment", "1\ta\tb\tmaybe"])
    with pytest.raises(DataFormatError, match=r"train\.tsv:3: unknown label 'maybe' for task rte"):
        load_task_examples("rte", rte, "train")
    with pytest.raises(FileNotFoundError, match=r"data directory .*SST-2 for task sst-2 does not exist"):
        load_task_examples("sst-2", tmp_path / "SST-2", "train")
    with pytest.raises(FileNotFoundError, match=r"dev\.tsv does not exist"):
        load_task_examples("rte", rte, "dev")
    with pytest.raises(UnknownTaskError, match=r"task rte has no split 'validation'; known splits: train, dev, test"):
        load_task_examples("rte", rte, "validation")
    sts = tmp_path / "STS-B"
    _write(sts / "train.tsv", ["i\tg\tf\ty\to\ts1\ts2\tsentence1\tsentence2\tscore", "0\tg\tf\ty\to\tx\tx\ta\tb\thigh"])
    with pytest.raises(DataFormatError, match=r"train\.tsv:2: sts-b expects a numeric label, found 'high'"):
        load_task_examples("sts-b", sts, "train")


def test_clue_layouts(tmp_path):
    d = tmp_path / "tnews"
    _jsonl(
        d / "train.json",
        [{"label": "102", "label_desc": "news_entertainment", "sentence": "江疏影", "keywords": "江疏影,美少女"}],
    )
    ex = load_task_examples("tnews", d, "train")[0]
    assert (ex.text_a, ex.text_b, ex.label) == ("江疏影", "江疏影,美少女", "102")
    assert get_task("tnews").label_id("102") == 2

    d = tmp_path / "ocnli"
    rows = [
        {"sentence1": "他去了", "sentence2": "他走了", "label": "entailment", "id": 0},
        {"sentence1": "他去了", "sentence2": "不确定", "label": "-", "id": 1},
    ]
    _jsonl(d / "train.50k.json", rows)
    assert [e.guid for e in load_task_examples("ocnli", d, "train")] == ["0"]  # "-" (no agreement) dropped

    d = tmp_path / "csl"
    _jsonl(d / "dev.json", [{"id": 3, "abst": "摘要内容", "keyword": ["水声", "模型"], "label": "1"}])
    ex = load_task_examples("csl", d, "dev")[0]
    assert (ex.text_a, ex.text_b, ex.label) == ("水声/模型", "摘要内容", "1")

    d = tmp_path / "wsc"
    target = {"span1_index": 0, "span1_text": "小明", "span2_index": 5, "span2_text": "他"}
    _jsonl(d / "train.json", [{"target": target, "idx": 0, "label": "true", "text": "小明说今天他会来"}])
    ex = load_task_examples("cluewsc2020", d, "train")[0]
    assert ex.text_a == "_小明_说今天[他]会来" and ex.label == "true"

    d = tmp_path / "afqmc"
    _jsonl(d / "test.json", [{"id": 9, "sentence1": "花呗", "sentence2": "借呗"}])
    ex = load_task_examples("afqmc", d, "test")[0]
    assert (ex.guid, ex.label) == ("9", None)
    _jsonl(d / "train.json", [{"sentence1": "花呗"}])
    with pytest.raises(DataFormatError, match=r"train\.json:1: row does not match the afqmc layout"):
        load_task_examples("afqmc", d, "train")


def test_read_documents_text_and_jsonl(tmp_path):
    text = _write(tmp_path / "corpus.txt", ["First doc one.", "First doc two.", "", "", "Second doc.", ""])
    assert read_documents(text) == [["First doc one.", "First doc two."], ["Second doc."]]
    jsonl = _jsonl(tmp_path / "corpus.jsonl", [{"text": "a\nb\n\n"}, {"text": ""}, {"text": "c"}])
    assert read_documents(jsonl) == [["a", "b"], ["c"]]
    bad = _jsonl(tmp_path / "bad.jsonl", [{"body": "x"}])
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: expected a string under 'text'"):
        read_documents(bad)
    with pytest.raises(ValueError, match="unknown corpus format 'xml'"):
        read_documents(text, format="xml")
