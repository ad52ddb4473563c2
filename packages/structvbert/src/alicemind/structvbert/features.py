"""Region features: read the bottom-up-attention TSV files (and the NPZ / HDF5 layouts users convert them to) into a
memory-mapped cache, built once, then opened with O(1) access per image.

Cache folder: ``index.json`` (image id -> first row, box count, image height and width) beside raw little-endian
arrays ``features.f32`` [rows, D], ``boxes.f32`` [rows, 4] (pixels, as read), ``scores.f32`` [rows] (detector
confidence, NaN where the layout has none), ``objects.i64`` / ``attrs.i64`` [rows] (detector labels, -1 where none).
A build is assembled in a sibling folder and renamed into place: a bad row leaves no cache behind.
"""

from __future__ import annotations

import base64
import binascii
import csv
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

TSV_FIELDS = ("img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf", "num_boxes",
              "boxes", "features")  # fmt: skip
INDEX_NAME = "index.json"
_ARRAYS = {"features": np.float32, "boxes": np.float32, "scores": np.float32, "objects": np.int64, "attrs": np.int64}
_SUFFIX = {np.float32: "f32", np.int64: "i64"}
BOX_TOLERANCE = 1e-5  # the original asserts 0 - 1e-5 < box < 1 + 1e-5 after normalising


class RegionFeatureError(ValueError):
    """A feature file that cannot be read as the layout it claims (the message names the file, row and field)."""


@dataclass
class ImageRegions:
    """One image's detections as read from a file (boxes in pixels)."""

    img_id: str
    img_h: int
    img_w: int
    features: np.ndarray  # [n, D] float32
    boxes: np.ndarray  # [n, 4] float32 x1, y1, x2, y2 in pixels
    scores: np.ndarray | None = None  # [n] detector confidence
    objects: np.ndarray | None = None  # [n] detector object label ids
    attrs: np.ndarray | None = None  # [n] detector attribute label ids


@dataclass
class RegionSample:
    """What the model takes for one image: features and boxes normalised to [0, 1], at most ``max_boxes`` rows."""

    features: np.ndarray
    boxes: np.ndarray
    objects: np.ndarray
    attrs: np.ndarray
    img_h: int
    img_w: int


def _decode(text: str, dtype, where: str, field: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RegionFeatureError(f"{where}: field {field!r} is not valid base64") from None
    if len(raw) % np.dtype(dtype).itemsize:
        raise RegionFeatureError(f"{where}: field {field!r} holds {len(raw)} bytes, not whole {np.dtype(dtype).name}s")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))


def _check(regions: ImageRegions, where: str, feature_dim: int | None) -> int:
    n = len(regions.boxes)
    if n == 0:
        raise RegionFeatureError(f"{where}: image {regions.img_id!r} has 0 boxes (the model needs at least one region)")
    if regions.boxes.shape != (n, 4):
        raise RegionFeatureError(
            f"{where}: boxes of image {regions.img_id!r} have shape {regions.boxes.shape}, expected ({n}, 4)"
        )
    if regions.features.ndim != 2 or regions.features.shape[0] != n:
        raise RegionFeatureError(
            f"{where}: features of image {regions.img_id!r} have shape {regions.features.shape}, expected ({n}, D)"
        )
    dim = regions.features.shape[1]
    if feature_dim is not None and dim != feature_dim:
        raise RegionFeatureError(
            f"{where}: features of image {regions.img_id!r} have dimension {dim}, expected {feature_dim}"
        )
    if regions.img_h <= 0 or regions.img_w <= 0:
        raise RegionFeatureError(f"{where}: image {regions.img_id!r} has size {regions.img_w}x{regions.img_h}")
    scale = np.array([regions.img_w, regions.img_h] * 2, dtype=np.float32)
    norm = regions.boxes / scale
    if not np.isfinite(norm).all() or norm.min() < -BOX_TOLERANCE or norm.max() > 1 + BOX_TOLERANCE:
        raise RegionFeatureError(
            f"{where}: image {regions.img_id!r} has boxes outside its {regions.img_w}x{regions.img_h} frame"
        )
    for name in ("scores", "objects", "attrs"):
        value = getattr(regions, name)
        if value is not None and len(value) != n:
            raise RegionFeatureError(f"{where}: image {regions.img_id!r} has {len(value)} {name} for {n} boxes")
    return dim


def read_tsv(path: str | Path) -> Iterator[ImageRegions]:
    """The LXMERT / bottom-up-attention TSV: one image a row, arrays as base64 of little-endian numpy bytes."""
    path = Path(path)
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f, TSV_FIELDS, delimiter="\t"), start=1):
            where = f"{path}:{line}"
            if None in row or any(row[k] is None for k in TSV_FIELDS):
                raise RegionFeatureError(f"{where}: expected {len(TSV_FIELDS)} tab-separated fields {TSV_FIELDS}")
            try:
                img_h, img_w, n = int(row["img_h"]), int(row["img_w"]), int(row["num_boxes"])
            except ValueError:
                raise RegionFeatureError(f"{where}: img_h, img_w and num_boxes must be integers") from None
            feats = _decode(row["features"], np.float32, where, "features")
            if n <= 0:
                raise RegionFeatureError(
                    f"{where}: image {row['img_id']!r} has {n} boxes (the model needs at least one region)"
                )
            if feats.size % n:
                raise RegionFeatureError(
                    f"{where}: features hold {feats.size} values, not a whole number per box ({n} boxes)"
                )
            yield ImageRegions(
                row["img_id"], img_h, img_w, feats.reshape(n, -1), _decode(row["boxes"], np.float32, where, "boxes").reshape(-1, 4),
                _decode(row["objects_conf"], np.float32, where, "objects_conf"),
                _decode(row["objects_id"], np.int64, where, "objects_id"),
                _decode(row["attrs_id"], np.int64, where, "attrs_id"),
            )  # fmt: skip


def read_npz_folder(folder: str | Path) -> Iterator[ImageRegions]:
    """One ``<img_id>.npz`` per image with ``img_h``, ``img_w``, ``num_boxes``, ``features``, ``boxes`` (optional
    ``objects_conf``, ``objects_id``, ``attrs_id``); read without pickle."""
    for file in sorted(Path(folder).glob("*.npz")):
        try:
            with np.load(file, allow_pickle=False) as data:
                n = int(data["num_boxes"])
                if n != len(data["boxes"]):
                    raise RegionFeatureError(f"{file}: num_boxes {n} but {len(data['boxes'])} boxes")
                opt = {
                    k: np.asarray(data[k]) if k in data else None for k in ("objects_conf", "objects_id", "attrs_id")
                }
                yield ImageRegions(file.stem, int(data["img_h"]), int(data["img_w"]),
                                   np.asarray(data["features"], np.float32), np.asarray(data["boxes"], np.float32),
                                   opt["objects_conf"], opt["objects_id"], opt["attrs_id"])  # fmt: skip
        except KeyError as err:
            raise RegionFeatureError(
                f"{file}: no array {err} (expected img_h, img_w, num_boxes, features, boxes)"
            ) from None
        except (ValueError, OSError) as err:
            if isinstance(err, RegionFeatureError):
                raise
            raise RegionFeatureError(f"{file}: not a readable .npz ({err})") from None


def read_hdf5(path: str | Path) -> Iterator[ImageRegions]:
    """The original's ``--use_hdf5`` layout: one entry per image id holding base64 blobs, index 0 = int64
    (h, w, n), 5 = boxes, 6 = features. Needs ``h5py`` (``pip install alicemind-structvbert[hdf5]``)."""
    try:
        import h5py
    except ImportError:
        raise RegionFeatureError(
            "reading HDF5 features needs h5py: pip install 'alicemind-structvbert[hdf5]'"
        ) from None
    path = Path(path)
    with h5py.File(path, "r") as images:
        for img_id in images:
            where = f"{path}[{img_id}]"
            blobs = images[img_id]
            if len(blobs) < 7:
                raise RegionFeatureError(
                    f"{where}: {len(blobs)} entries, expected 7 (index 0 size, 5 boxes, 6 features)"
                )
            text = [b.decode("ascii") if isinstance(b, bytes) else str(b) for b in blobs[:7]]
            size = _decode(text[0], np.int64, where, "0 (img_h, img_w, num_boxes)")
            if size.size != 3:
                raise RegionFeatureError(f"{where}: entry 0 holds {size.size} int64s, expected 3 (h, w, n)")
            img_h, img_w, n = (int(v) for v in size)
            if n <= 0:
                raise RegionFeatureError(
                    f"{where}: image {img_id!r} has {n} boxes (the model needs at least one region)"
                )
            feats = _decode(text[6], np.float32, where, "6 (features)")
            if feats.size % n:
                raise RegionFeatureError(f"{where}: features hold {feats.size} values, not a whole number per box")
            boxes = _decode(text[5], np.float32, where, "5 (boxes)").reshape(-1, 4)
            yield ImageRegions(img_id, img_h, img_w, feats.reshape(n, -1), boxes)


def read_source(source: str | Path) -> Iterator[ImageRegions]:
    """Pick the reader by what ``source`` is: a folder of .npz files, an .h5/.hdf5 file, or a TSV file."""
    source = Path(source)
    if source.is_dir():
        return read_npz_folder(source)
    if not source.is_file():
        raise RegionFeatureError(f"no feature file or folder at {source}")
    if source.suffix.lower() in (".h5", ".hdf5"):
        return read_hdf5(source)
    return read_tsv(source)
