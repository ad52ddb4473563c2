"""``RegionFeatures``: the memory-mapped cache of region features that every StructVBERT task reads from."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from alicemind.structvbert.features import (
    _ARRAYS,
    _SUFFIX,
    INDEX_NAME,
    RegionFeatureError,
    RegionSample,
    _check,
    read_source,
)

logger = logging.getLogger(__name__)
CACHE_VERSION = 1


def _progress(iterable, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are optional
        return iterable
    return tqdm(iterable, desc=desc, unit=" images", leave=False, disable=None)


class RegionFeatures:
    """Region features of many images, opened from a cache folder (see :mod:`alicemind.structvbert.features`).

    ``RegionFeatures.build(sources, cache)`` reads TSV files, NPZ folders or HDF5 files once into ``cache``
    (reusing it when it already exists); ``RegionFeatures(cache)`` opens it: the arrays are memory-mapped and an
    image is two slices away. ``get(img_id, max_boxes)`` normalises boxes by the image size as the original does
    and cuts images with more boxes than the model takes to the highest-scoring ones, with a warning.
    """

    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir)
        index_file = self.path / INDEX_NAME
        if not index_file.is_file():
            raise FileNotFoundError(f"{self.path}: no {INDEX_NAME}; build the cache with RegionFeatures.build")
        index = json.loads(index_file.read_text(encoding="utf-8"))
        if index.get("version") != CACHE_VERSION:
            raise RegionFeatureError(f"{self.path}: cache version {index.get('version')}, expected {CACHE_VERSION}")
        self.feature_dim = int(index["feature_dim"])
        self._images: dict[str, list[int]] = index["images"]
        rows = int(index["rows"])
        shapes = {"features": (rows, self.feature_dim), "boxes": (rows, 4)}
        self._arrays = {
            name: np.memmap(
                self.path / f"{name}.{_SUFFIX[dtype]}",
                dtype=np.dtype(dtype).newbyteorder("<"),
                mode="r",
                shape=shapes.get(name, (rows,)),
            )  # fmt: skip
            for name, dtype in _ARRAYS.items()
        }
        self._warned: set[str] = set()

    # -- building -----------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, sources: str | Path | Sequence[str | Path], cache_dir: str | Path, *, rebuild: bool = False,
              progress_bar: bool = True) -> RegionFeatures:  # fmt: skip
        """Read every image of ``sources`` into ``cache_dir`` (once: an existing cache is opened unless
        ``rebuild``). A bad row raises :class:`RegionFeatureError` and leaves no cache."""
        target = Path(cache_dir)
        if (target / INDEX_NAME).is_file() and not rebuild:
            return cls(target)
        sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
        if not sources:
            raise RegionFeatureError("no feature sources given")
        if target.is_dir() and not (target / INDEX_NAME).is_file() and any(target.iterdir()):
            # Only a cache of ours is ever replaced (``rebuild``); a folder of someone else's files is not.
            raise RegionFeatureError(
                f"{target} holds files but is not a region-feature cache; give a new or empty folder"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            cls._write(sources, staging, progress_bar)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(target)

    @staticmethod
    def _write(sources: Iterable[str | Path], staging: Path, progress_bar: bool) -> None:
        files = {name: (staging / f"{name}.{_SUFFIX[dtype]}").open("wb") for name, dtype in _ARRAYS.items()}
        images: dict[str, list[int]] = {}
        rows, dim, origins = 0, None, []
        try:
            for source in sources:
                origins.append(str(source))
                regions_iter = read_source(source)
                for regions in (
                    _progress(regions_iter, f"reading {Path(source).name}") if progress_bar else regions_iter
                ):
                    dim = _check(regions, str(source), dim)
                    if regions.img_id in images:
                        raise RegionFeatureError(f"{source}: image {regions.img_id!r} appears twice")
                    n = len(regions.boxes)
                    fill = {
                        "scores": np.full(n, np.nan, np.float32),
                        "objects": np.full(n, -1),
                        "attrs": np.full(n, -1),
                    }
                    for name, dtype in _ARRAYS.items():
                        value = getattr(regions, name)
                        value = fill[name] if value is None else value
                        files[name].write(
                            np.ascontiguousarray(value, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
                        )
                    images[regions.img_id] = [rows, n, regions.img_h, regions.img_w]
                    rows += n
        finally:
            for f in files.values():
                f.close()
        if not images:
            raise RegionFeatureError(f"no images in {origins}")
        index = {"version": CACHE_VERSION, "feature_dim": dim, "rows": rows, "sources": origins, "images": images}
        (staging / INDEX_NAME).write_text(json.dumps(index), encoding="utf-8")

    # -- reading ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._images)

    def __contains__(self, img_id: object) -> bool:
        return img_id in self._images

    def ids(self) -> list[str]:
        """Image ids in cache order."""
        return list(self._images)

    def num_boxes(self, img_id: str) -> int:
        return self._entry(img_id)[1]

    def _entry(self, img_id: str) -> list[int]:
        try:
            return self._images[img_id]
        except KeyError:
            raise KeyError(f"image {img_id!r} is not in the feature cache {self.path}") from None

    def raw(self, img_id: str) -> dict[str, np.ndarray]:
        """The arrays of one image as stored (read-only views; boxes in pixels)."""
        start, n, _, _ = self._entry(img_id)
        return {name: array[start : start + n] for name, array in self._arrays.items()}

    def get(
        self, img_id: str, max_boxes: int | None = None, *, add_box_size: bool = False, warn: bool = True
    ) -> RegionSample:
        """One image for the model: boxes divided by (w, h, w, h) (with the box area appended when
        ``add_box_size``), at most ``max_boxes`` regions: more are cut to the highest-scoring ones (the first
        ones where the layout stores no score), with a warning unless ``warn=False`` (a progressive stage's
        cap is the schedule, not a surprise)."""
        start, n, img_h, img_w = self._entry(img_id)
        keep = slice(start, start + n)
        arrays = {name: array[keep] for name, array in self._arrays.items()}
        if max_boxes is not None and n > max_boxes:
            scores = arrays["scores"]
            order = (
                np.arange(max_boxes)
                if np.isnan(scores).all()
                else np.sort(np.argsort(-scores, kind="stable")[:max_boxes])
            )
            arrays = {name: array[order] for name, array in arrays.items()}
            if warn and img_id not in self._warned:
                self._warned.add(img_id)
                how = "first" if np.isnan(scores).all() else "highest-scoring"
                logger.warning("image %r has %d boxes; keeping the %d %s ones", img_id, n, max_boxes, how)
        boxes = np.array(arrays["boxes"], dtype=np.float32) / np.array([img_w, img_h, img_w, img_h], np.float32)
        if add_box_size:
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            boxes = np.column_stack([boxes, area])
        return RegionSample(np.array(arrays["features"]), boxes, np.array(arrays["objects"]),
                            np.array(arrays["attrs"]), img_h, img_w)  # fmt: skip
