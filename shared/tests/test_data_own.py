"""Your own files as tasks: columns, label sets, streaming input, CoNLL, SQuAD, saved specs, and their errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from alicemind.core.data import (
    DataFormatError,
    get_task,
    load_task_examples,
    own_task,
    read_columns,
    read_conll,
    read_squad,
    tag_set,
    task_from_dict,
    task_to_dict,
)
from alicemind.core.data.own_data import stream_texts
from alicemind.core.data.own_spans import check_tags
from alicemind.core.data.tasks import Columns


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_with_header_reads_labels_sorted_and_finds_columns(tmp_path):
    _write(tmp_path / "train.tsv", "sentence\tlabel\nstars shine\tscience\ngoal!\tsports\natoms\tscience\n")
    _write(tmp_path / "dev.tsv", "sentence\tlabel\nthe match\tsports\n")
    task = own_task("classify", data_dir=tmp_path)
    assert task.labels == ("science", "sports")
    assert (task.columns.text_a, task.columns.label, task.columns.has_header) == ("sentence", "label", True)
    dev = load_task_examples(task, tmp_path, "dev")
    assert [(e.text_a, e.label, task.label_id(e.label)) for e in dev] == [("the match", "sports", 1)]
    # Labels given in the recipe keep their order.
    assert own_task("classify", data_dir=tmp_path, labels=["sports", "science"]).labels == ("sports", "science")


def test_headerless_file_by_index_and_csv_pairs_with_quotes(tmp_path):
    _write(tmp_path / "train.tsv", "x1\tpos\nx2\tneg\n")
    task = own_task("classify", data_dir=tmp_path)
    assert (task.columns.text_a, task.columns.label, task.columns.has_header) == (0, -1, False)
    assert [e.text_a for e in load_task_examples(task, tmp_path, "train")] == ["x1", "x2"]

    d = tmp_path / "pairs"
    _write(d / "train.csv", 'premise,hypothesis,gold\n"a cat, sat",a cat,yes\nsky,"ground, low",no\n')
    task = own_task("classify", data_dir=d, columns={"text_a": "premise", "text_b": "hypothesis", "label": "gold"})
    rows = load_task_examples(task, d, "train")
    assert [(e.text_a, e.text_b, e.label) for e in rows] == [
        ("a cat, sat", "a cat", "yes"),
        ("sky", "ground, low", "no"),
    ]


def test_jsonl_regression(tmp_path):
    rows = [{"text": "a", "score": 1.5}, {"text": "b", "score": 0.25}]
    _write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    task = own_task("regress", data_dir=tmp_path)
    assert task.is_regression and task.columns.label == "score"
    assert [e.label for e in load_task_examples(task, tmp_path, "train")] == [1.5, 0.25]


@pytest.mark.parametrize(
    "train, dev, needle",
    [
        ("sentence\ttopic\na\tx\nb\ty\n", None, "train.tsv:1: no label column found"),
        ("sentence\tlabel\na\tx\nb\t \n", None, "train.tsv:3: empty label in column 1"),
        ("sentence\tlabel\na\tx\nb,y\n", None, "train.tsv:3: expected 2 tab-separated fields, found 1 (mixed delimit"),
        ("sentence\tlabel\na\tx\nb\ty\n", "sentence\tlabel\nc\tx\nd\tz\n", "dev.tsv:3: label 'z' does not occur in"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, train, dev, needle):
    _write(tmp_path / "train.tsv", train)
    if dev:
        _write(tmp_path / "dev.tsv", dev)
    with pytest.raises(DataFormatError) as err:
        load_task_examples(own_task("classify", data_dir=tmp_path), tmp_path, "dev")
    assert needle in str(err.value) and "\n" not in str(err.value)
    if dev:
        assert "the training file" in str(err.value) and "(labels: x, y)" in str(err.value)


def test_a_named_column_that_is_missing_and_labels_outside_the_given_set(tmp_path):
    _write(tmp_path / "train.tsv", "sentence\tlabel\na\tx\nb\ty\n")
    with pytest.raises(DataFormatError, match=r"train\.tsv:1: no column 'gold' \(found: sentence, label\)"):
        own_task("classify", data_dir=tmp_path, columns={"label": "gold"})
    with pytest.raises(DataFormatError, match=r"train\.tsv:3: label 'y' is not in labels=\[x, z\]"):
        own_task("classify", data_dir=tmp_path, labels=["x", "z"])
    with pytest.raises(FileNotFoundError, match="no training file"):
        own_task("classify", data_dir=tmp_path / "..")


def test_seq2seq_columns_from_csv_and_jsonl(tmp_path):
    csv_file = _write(tmp_path / "t.csv", 'source,target\n"long, text",short\nb,c\n')
    assert [
        r
        for _, r in read_columns(
            csv_file, {"source": None, "target": None}, {"source": ("source",), "target": ("target",)}
        )
    ] == [  # fmt: skip
        {"source": "long, text", "target": "short"},
        {"source": "b", "target": "c"},
    ]
    jsonl = _write(tmp_path / "t.jsonl", '{"doc": "x", "sum": "y"}\n{"doc": "z"}\n')
    with pytest.raises(DataFormatError, match=r"t\.jsonl:2: no target field 'sum'"):
        read_columns(jsonl, {"source": "doc", "target": "sum"}, {})
    headerless = _write(tmp_path / "h.tsv", "a\tb\nc\td\n")
    rows = read_columns(headerless, {"source": None, "target": None}, {}, positions={"source": 0, "target": 1})
    assert [(n, r["target"]) for n, r in rows] == [(1, "b"), (2, "d")]


def test_stream_texts_reads_header_or_positions_lazily():
    cols = Columns(text_a="sentence", label="label")
    assert list(stream_texts(io.StringIO("sentence\tlabel\nhi\tx\n\nyo\ty\n"), columns=cols)) == [
        (2, "hi", None),
        (4, "yo", None),
    ]
    assert list(stream_texts(["plain text\n"], columns=cols)) == [(1, "plain text", None)]
    pair = Columns(text_a="a", text_b="b")
    assert list(stream_texts(['{"a": "p", "b": "q"}'], columns=pair, format="jsonl")) == [(1, "p", "q")]
    with pytest.raises(DataFormatError, match=r"<stdin>:1: expected at least 2 TSV fields, found 1"):
        list(stream_texts(["only one"], columns=pair))

    def lines():  # nothing past the first row may be read before it is answered
        yield "first\n"
        raise AssertionError("read ahead")

    assert next(stream_texts(lines(), columns=cols)) == (1, "first", None)


def test_conll_tags_and_errors(tmp_path):
    path = _write(tmp_path / "t.conll", "-DOCSTART- O\n\nAnna B-PER\nruns O\n\nin O\nRome B-LOC\n")
    sentences = read_conll(path)
    assert [(s.tokens, s.tags, s.line) for s in sentences] == [
        (("Anna", "runs"), ("B-PER", "O"), 3),
        (("in", "Rome"), ("O", "B-LOC"), 6),
    ]
    assert tag_set(sentences, path) == ("O", "B-LOC", "B-PER")
    with pytest.raises(DataFormatError, match=r"t\.conll:7: tag 'B-LOC' does not occur in train"):
        check_tags(sentences, ("O", "B-PER"), path, "train")
    bad = _write(tmp_path / "bad.conll", "Anna B-PER\nlonely\n")
    with pytest.raises(DataFormatError, match=r"bad\.conll:2: expected 'token<TAB>tag', found 1 field"):
        read_conll(bad)


def test_squad_answers_are_checked_against_the_context(tmp_path):
    ctx = "Anna lives in Rome."
    good = {"data": [{"paragraphs": [{"context": ctx, "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "Rome", "answer_start": 14}]}]}]}]}  # fmt: skip
    path = _write(tmp_path / "s.json", json.dumps(good))
    assert read_squad(path)[0].answers == (("Rome", 14),)
    good["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    _write(path, json.dumps(good))
    with pytest.raises(DataFormatError, match="question q1: answer 'Rome' is not at answer_start 3"):
        read_squad(path)
    _write(path, '{"data": [\n  {oops}\n]}')
    with pytest.raises(DataFormatError, match=r"s\.json:2: invalid JSON"):
        read_squad(path)


def test_task_specs_round_trip_and_keep_the_saved_label_order(tmp_path):
    _write(tmp_path / "train.tsv", "sentence\tlabel\na\tb2\nb\ta1\n")
    own = own_task("classify", data_dir=tmp_path, name="mine")
    back = task_from_dict(json.loads(json.dumps(task_to_dict(own))))
    assert (back.name, back.labels, back.columns, back.metrics) == ("mine", ("a1", "b2"), own.columns, ("accuracy",))
    saved = task_to_dict(get_task("sst-2"))
    assert saved == {"name": "sst-2", "kind": "classify", "labels": ["0", "1"], "registered": True}
    # A model trained when the registry said another order keeps the order it was trained with.
    assert task_from_dict({**saved, "labels": ["1", "0"]}).labels == ("1", "0")
    assert task_from_dict(saved) is get_task("sst-2")
