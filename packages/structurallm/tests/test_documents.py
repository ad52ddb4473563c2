"""FUNSD and JSONL readers, cell-level boxes, the sliding window, and clear errors for bad documents."""

from __future__ import annotations

import json

import pytest
import torch
from structurallm_testing import funsd_annotation

from alicemind.structurallm import DocumentEncoder, DocumentError, make_document, read_documents, read_funsd
from alicemind.structurallm.encoder import assemble_word_predictions

ENTITIES = [
    ("header", "the form", [100, 20, 400, 60]),
    ("question", "name of", [50, 100, 200, 130]),
    ("answer", "total amount", [220, 100, 500, 130]),
    ("other", "date", [600, 900, 700, 950]),
]


def _funsd(tmp_path, entities=ENTITIES):
    path = tmp_path / "annotations" / "doc_0001.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(funsd_annotation(entities)))
    return path


def test_funsd_words_cell_boxes_and_labels(tmp_path):
    doc = read_funsd(_funsd(tmp_path), page_size=(1000, 2000))
    assert doc.words == ["the", "form", "name", "of", "total", "amount", "date"]
    assert doc.labels == ["B-HEADER", "I-HEADER", "B-QUESTION", "I-QUESTION", "B-ANSWER", "I-ANSWER", "O"]
    # Every word has its entity's (cell's) box, normalised: x * 1000 / 1000, y * 1000 / 2000.
    assert doc.boxes[0] == doc.boxes[1] == (100, 10, 400, 30)
    assert doc.boxes[4] == (220, 50, 500, 65)
    assert doc.cells == [0, 0, 1, 1, 2, 2, 3]


def test_funsd_page_size_from_the_image_beside(tmp_path):
    from PIL import Image

    path = _funsd(tmp_path)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (1000, 2000)).save(tmp_path / "images" / "doc_0001.png")
    assert read_documents(tmp_path / "annotations")[0].boxes[0] == (100, 10, 400, 30)
    (tmp_path / "images" / "doc_0001.png").unlink()
    with pytest.raises(DocumentError, match="no page image beside it"):
        read_funsd(path)


def test_labels_on_first_sub_token_and_window_reassembles_every_word(tokenizer, tmp_path):
    words = ["name", "xylophonist", "date"] * 12  # "xylophonist" splits into many byte-level pieces
    labels = ["B-QUESTION", "I-QUESTION", "O"] * 12
    doc = make_document(words, [[10 * i, 5, 10 * i + 8, 9] for i in range(36)], labels=labels)
    label2id = {"O": 0, "B-QUESTION": 1, "I-QUESTION": 2}
    enc = DocumentEncoder(tokenizer, max_length=24, stride=6, label2id=label2id)
    windows = enc.encode(doc)
    pieces = tokenizer.word_pieces(words)
    assert len(windows) > 3 and sum(len(p) for p in pieces) > 24
    first = windows[0]
    assert first["input_ids"][0] == tokenizer.cls_token_id and first["input_ids"][-1] == tokenizer.sep_token_id
    assert first["bbox"][0] == [0, 0, 0, 0] and first["bbox"][-1] == [1000, 1000, 1000, 1000]
    n_name, n_xylo = len(pieces[0]), len(pieces[1])
    assert first["labels"][1] == 1 and first["labels"][1 + n_name] == 2
    assert first["labels"][2 + n_name : 1 + n_name + n_xylo] == [-100] * (n_xylo - 1)
    assert first["bbox"][2 + n_name] == first["bbox"][1 + n_name] == [10, 5, 18, 9]  # all pieces share the box
    # Logits that encode each word's gold label where the window owns it give back every word's label.
    logits = []
    for w in windows:
        scores = torch.zeros(len(w["input_ids"]), 3)
        for position, label in enumerate(w["labels"]):
            if label >= 0:
                scores[position, label] = 1.0
        logits.append(scores)
    assert assemble_word_predictions(windows, logits, len(words)) == [label2id[x] for x in labels]
    owned = [w for window in windows for w, o in zip(window["word_index"], window["owned"]) if o]
    assert sorted(owned) == list(range(len(words)))  # each word owned exactly once
    batch = enc.pad(windows)
    assert batch["input_ids"].shape == (len(windows), 24) and batch["bbox"].shape == (len(windows), 24, 4)


def test_jsonl_cells_give_union_boxes(tmp_path):
    path = tmp_path / "docs.jsonl"
    row = {"words": ["to", "from", "x"], "boxes": [[0, 0, 10, 10], [20, 5, 30, 40], [50, 50, 60, 60]],
           "cells": [7, 7, 3], "page_size": [100, 100], "label": "memo"}  # fmt: skip
    path.write_text(json.dumps(row) + "\n")
    doc = read_documents(path)[0]
    assert doc.boxes == [(0, 0, 300, 400), (0, 0, 300, 400), (500, 500, 600, 600)]
    assert doc.cells == [0, 0, 1] and doc.extra == {"label": "memo"}


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([0, 0, 120, 10], "outside the page"),
        ([-3, 0, 10, 10], "negative coordinate"),
        ([50, 0, 10, 10], "inverted box"),
        (None, "has no box"),
        ([1, 2, 3], "must be 4 numbers"),
    ],
)
def test_bad_boxes_are_clear_errors(box, message):
    with pytest.raises(DocumentError, match=message):
        make_document(["a", "b"], [[0, 0, 5, 5], box], page_size=(100, 100))


def test_clamp_clips_to_the_page_and_empty_documents_fail(tmp_path):
    doc = make_document(["a"], [[-2, 0, 130, 50]], page_size=(100, 100), clamp=True)
    assert doc.boxes == [(0, 0, 1000, 500)]
    with pytest.raises(DocumentError, match="has no words"):
        make_document([], [])
    with pytest.raises(DocumentError, match="2 words but 1 boxes"):
        make_document(["a", "b"], [[0, 0, 1, 1]])
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"form": []}))
    with pytest.raises(DocumentError, match="has no words"):
        read_funsd(empty, page_size=(10, 10))


def test_model_refuses_out_of_range_boxes_before_any_lookup():
    from alicemind.structurallm import StructuralLMConfig, StructuralLMModel

    model = StructuralLMModel(StructuralLMConfig.from_preset("structurallm.test"))
    ids = torch.tensor([[0, 5, 2]])
    with pytest.raises(ValueError, match=r"bbox coordinates must lie in \[0, 1000\]"):
        model(ids, bbox=torch.tensor([[[0, 0, 0, 0], [0, 0, 1001, 3], [0, 0, 0, 0]]]))
    with pytest.raises(ValueError, match=r"pos_bbox ids must lie in \[0, 20\]"):
        model(ids, bbox=torch.zeros(1, 3, 4, dtype=torch.long), pos_bbox=torch.tensor([[0, 21, 0]]))
    with pytest.raises(ValueError, match="needs bbox"):
        model(ids)


def test_the_original_processed_funsd_files(tmp_path):
    (tmp_path / "test.txt").write_text("-DOCSTART- a.png\nname\tB-QUESTION\nof\tI-QUESTION\nx\tB-ANSWER\n\ndate\tO\n")
    (tmp_path / "test_box.txt").write_text(
        '-DOCSTART- a.png\nname\t"10 20 30 40"\t1\nof\t"10 20 30 40"\t1\nx\t50 20 90 40\t2\n\ndate\t1 2 3 4\t1\n'
    )
    docs = read_documents(tmp_path / "test.txt")
    assert [d.words for d in docs] == [["name", "of", "x"], ["date"]]
    assert docs[0].labels == ["B-QUESTION", "I-QUESTION", "B-ANSWER"]
    assert docs[0].boxes == [(10, 20, 30, 40), (10, 20, 30, 40), (50, 20, 90, 40)] and docs[0].cells == [0, 0, 1]
    (tmp_path / "test.txt").write_text("name\tO\n")
    (tmp_path / "test_box.txt").write_text("name\t10 20\n")
    with pytest.raises(DocumentError, match="must be 4 numbers"):
        read_documents(tmp_path / "test.txt")
    (tmp_path / "test.txt").write_text("name\tO\nof\tO\n")
    with pytest.raises(DocumentError, match="differ in length"):
        read_documents(tmp_path / "test.txt")
