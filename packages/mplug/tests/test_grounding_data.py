"""The release's TransVG grounding split files (pickled lists of tuples) read through core's sealed unpickler in
their exact layouts; a hostile pickle is refused without running; the refcoco recipe trains and evaluates on them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from mplug_testing import SHAPES, draw_shape, tokenizer
from PIL import Image

from alicemind.core.cli import CliError, main
from alicemind.mplug.grounding_data import read_transvg_split

COCO = "other/images/mscoco/images/train2014"


def _unc_split(tmp_path, split, items):
    folder = tmp_path / "data" / "unc"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(items, folder / f"unc_{split}.pth")  # as TransVG/ReSC wrote them: torch.save(list of tuples)


def test_refcoco_family_layout_and_trainval(tmp_path):
    # (image_file, mask/ann id, [x, y, w, h], phrase, attributes); a numpy box as some splits hold it
    _unc_split(tmp_path, "train", [("COCO_1.jpg", 17, [10, 20, 30, 40], "The Red Circle", ["red"]),
                                   ("COCO_2.jpg", 18, np.array([1.9, 2.2, 3.0, 4.0]), "left one", [])])  # fmt: skip
    _unc_split(tmp_path, "val", [("COCO_3.jpg", 19, [0, 0, 5, 5], "a square", [])])
    train = read_transvg_split(tmp_path / "data", "unc", "train", tmp_path / "ln")
    assert train[0] == {"image": str(tmp_path / "ln" / COCO / "COCO_1.jpg"), "text": "the red circle",
                        "bbox": [10, 20, 40, 60], "item_id": 0}  # fmt: skip
    assert train[1]["bbox"] == [1, 2, 4, 6]  # integer truncation, then x2 = x + w, as grounding_dataset.py
    trainval = read_transvg_split(tmp_path / "data", "unc", "trainval", tmp_path / "ln")
    assert [r["item_id"] for r in trainval] == [0, 1, 2] and trainval[2]["text"] == "a square"


def test_referit_and_flickr_boxes_are_already_corners(tmp_path):
    for name, item in (("referit", ("8756.jpg", "8756_2.mat", [4, 5, 60, 70], "sky", None)),
                       ("flickr", ("36979.jpg", [4, 5, 60, 70], "a dog"))):  # fmt: skip
        (tmp_path / name).mkdir()
        torch.save([item], tmp_path / name / f"{name}_test.pth")
        (record,) = read_transvg_split(tmp_path, name, "test", tmp_path / "ln")
        assert record["bbox"] == [4, 5, 60, 70]
    assert record["image"] == str(tmp_path / "ln" / "Flickr30k" / "flickr30k_images" / "36979.jpg")


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_and_bad_layouts_are_refused(tmp_path):
    marker = tmp_path / "ran"
    _unc_split(tmp_path, "train", [("a.jpg", 1, [0, 0, 1, 1], "x", []), _Hostile(marker)])
    with pytest.raises(CliError, match="refused .*unc_train.pth"):
        read_transvg_split(tmp_path / "data", "unc", "train", tmp_path)
    assert not marker.exists()
    _unc_split(tmp_path, "val", [("a.jpg", [0, 0, 1, 1], "three fields")])  # flickr's layout in a unc file
    with pytest.raises(CliError, match="expected a 5-tuple in the unc layout"):
        read_transvg_split(tmp_path / "data", "unc", "val", tmp_path)
    with pytest.raises(CliError, match="dataset gref has no split 'testA'"):
        read_transvg_split(tmp_path / "data", "gref", "testA", tmp_path)
    with pytest.raises(CliError, match="no grounding split file"):
        read_transvg_split(tmp_path / "data", "unc+", "val", tmp_path)
    with pytest.raises(CliError, match="unknown grounding dataset 'refcoco'"):
        read_transvg_split(tmp_path / "data", "refcoco", "val", tmp_path)


def test_refcoco_recipe_on_transvg_splits_then_reproduce_shows_it(tmp_path, capsys):
    import random

    rng = random.Random(0)
    images = tmp_path / "ln" / COCO
    images.mkdir(parents=True)
    items = []
    for i in range(8):
        canvas = Image.new("RGB", (64, 64), (128, 128, 128))
        x, y = (0, 0) if i % 2 else (32, 32)
        canvas.paste(draw_shape("red", SHAPES[i % 3], rng), (x, y))
        canvas.save(images / f"COCO_{i}.jpg")
        items.append((f"COCO_{i}.jpg", i, [x, y, 32, 32], f"the {SHAPES[i % 3]}", []))
    _unc_split(tmp_path, "train", items)
    _unc_split(tmp_path, "val", items[:4])
    tokenizer(with_box_tokens=True).save_pretrained(tmp_path / "tok")
    run = tmp_path / "run"
    assert main(["mplug", "finetune", "--recipe", "refcoco", "--no-progress", f"split_root={tmp_path / 'data'}",
                 f"data_root={tmp_path / 'ln'}", f"tokenizer={tmp_path / 'tok'}", "+scratch_config=mplug.test",
                 "image_size=32", f"output_dir={run}", "+training.max_steps=2", "training.num_epochs=null",
                 "training.per_device_batch_size=4", "training.precision=fp32", "training.save_every=0"]) == 0  # fmt: skip
    capsys.readouterr()
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["recipe"] == "refcoco" and saved["dataset"] == "unc" and saved["eval_file"] == "val"
    assert 0.0 <= saved["metrics"]["accuracy@0.5"] <= 1.0
    assert main(["mplug", "reproduce", "--table", "results", "--runs", str(run)]) == 0
    rows = {line.split(" | ")[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| REC")}
    assert f"{100 * saved['metrics']['accuracy@0.5']:.2f} (val; {run})" in rows["RefCOCO"]
    assert rows["RefCOCO+"].endswith("| not run |") and rows["RefCOCOg"].endswith("| not run |")
