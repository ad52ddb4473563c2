"""The grounding split files the release reads (TransVG/ReSC layout, ``dataset/grounding_dataset.py``), through core's
sealed unpickler: ``<split_root>/<dataset>/<dataset>_<split>.pth`` holds a pickled list of tuples,

- ``referit``, ``unc``, ``unc+``, ``gref``, ``gref_umd``: ``(image_file, mask_or_id, bbox, phrase, attributes)``;
  the RefCOCO family's ``bbox`` is ``[x, y, w, h]`` (made ``x1, y1, x2, y2`` with integer truncation, as released),
  referit's is already ``x1, y1, x2, y2``;
- ``flickr``: ``(image_file, bbox x1 y1 x2 y2, phrase)``.

Images live under ``data_root`` as the release expects (``other/images/mscoco/images/train2014`` for the RefCOCO
family, ``referit/images``, ``Flickr30k/flickr30k_images``). ``trainval`` reads train + val (not for referit,
which has its own file); ``vg_uni`` (training only) is the release's union of referit, unc, unc+ and gref_umd.
Any global other than plain containers, numbers, strings, tensors and numpy arrays is refused, never run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alicemind.core.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint_object
from alicemind.core.cli import CliError

SPLITS = {
    "referit": ("train", "val", "trainval", "test"),
    "unc": ("train", "val", "trainval", "testA", "testB"),
    "unc+": ("train", "val", "trainval", "testA", "testB"),
    "gref": ("train", "val"),
    "gref_umd": ("train", "val", "test"),
    "flickr": ("train", "val", "test"),
}
UNION = {"vg_uni": ("referit", "unc", "unc+", "gref_umd")}  # grounding_dataset.build_uni_training_dataset
IMAGE_DIRS = {"referit": "referit/images", "flickr": "Flickr30k/flickr30k_images"}
COCO_IMAGES = "other/images/mscoco/images/train2014"


def _load_split_file(path: Path) -> list:
    if not path.is_file():
        raise CliError(f"no grounding split file {path} (expected <split_root>/<dataset>/<dataset>_<split>.pth)")
    try:
        items = load_checkpoint_object(path)
    except UnsafeCheckpointError as err:
        raise CliError(f"refused {path}: it is not plain data ({err})") from None
    except CheckpointError as err:
        raise CliError(f"cannot read {path}: {err}") from None
    if not isinstance(items, list | tuple):
        raise CliError(f"{path} must hold a list of tuples, found {type(items).__name__}")
    return list(items)


def _box(value: Any, where: str) -> list[int]:
    try:
        box = [int(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    except (TypeError, ValueError):
        box = []
    if len(box) != 4:
        raise CliError(f"{where}: bbox must be 4 numbers, got {value!r}")
    return box


def _record(item: Any, dataset: str, image_dir: Path, where: str) -> dict[str, Any]:
    size = 3 if dataset == "flickr" else 5
    if not isinstance(item, list | tuple) or len(item) != size:
        raise CliError(f"{where}: expected a {size}-tuple in the {dataset} layout, got {item!r:.120}")
    if dataset == "flickr":
        image_file, bbox, phrase = item
    else:
        image_file, _, bbox, phrase, _ = item
    box = _box(bbox, where)
    if dataset not in ("referit", "flickr"):  # RefCOCO family: x, y, w, h -> x1, y1, x2, y2
        box = [box[0], box[1], box[0] + box[2], box[1] + box[3]]
    if not isinstance(image_file, str) or not isinstance(phrase, str):
        raise CliError(f"{where}: image file and phrase must be strings, got {item!r:.120}")
    return {"image": str(image_dir / image_file), "text": phrase.lower(), "bbox": box}


def read_transvg_split(split_root: str | Path, dataset: str, split: str, data_root: str | Path) -> list[dict]:
    """Grounding records ``{"image", "text", "bbox": [x1, y1, x2, y2], "item_id"}`` of one TransVG split."""
    if dataset in UNION:
        if split != "train":
            raise CliError(f"{dataset} is a training union; evaluate on one of {sorted(SPLITS)}")
        records = [r for name in UNION[dataset] for r in read_transvg_split(split_root, name, split, data_root)]
        return [dict(r, item_id=i) for i, r in enumerate(records)]
    if dataset not in SPLITS:
        raise CliError(f"unknown grounding dataset {dataset!r}; known: {', '.join([*SPLITS, *UNION])}")
    if split not in SPLITS[dataset]:
        raise CliError(f"dataset {dataset} has no split {split!r}; it has {', '.join(SPLITS[dataset])}")
    parts = ["train", "val"] if split == "trainval" and dataset != "referit" else [split]
    image_dir = Path(data_root) / IMAGE_DIRS.get(dataset, COCO_IMAGES)
    records = []
    for part in parts:
        path = Path(split_root) / dataset / f"{dataset}_{part}.pth"
        for i, item in enumerate(_load_split_file(path)):
            records.append(_record(item, dataset, image_dir, f"{path} item {i}"))
    return [dict(r, item_id=i) for i, r in enumerate(records)]
