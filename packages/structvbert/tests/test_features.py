"""Region features: the original TSV format, NPZ and HDF5 layouts, the cache, box normalisation, the box cap, and
bad input (one clear error, nothing half-written)."""

from __future__ import annotations

import base64
import logging

import numpy as np
import pytest
from structvbert_testing import b64, random_image, tsv_row, write_tsv

from alicemind.structvbert import RegionFeatures
from alicemind.structvbert.features import RegionFeatureError, read_tsv


def _images(seed=0, counts=(10, 36, 100)):
    rng = np.random.default_rng(seed)
    return [(f"COCO_{i:06d}", *random_image(rng, n)) for i, n in enumerate(counts)]


def test_tsv_reader_and_cache_return_identical_arrays(tmp_path):
    images = _images()
    tsv = write_tsv(tmp_path / "val2014.tsv", [tsv_row(i, f, b, h, w) for i, f, b, h, w in images])
    read = list(read_tsv(tsv))
    assert [r.img_id for r in read] == [i for i, *_ in images]
    for r, (_, feats, boxes, h, w) in zip(read, images):
        assert np.array_equal(r.features, feats) and np.array_equal(r.boxes, boxes) and (r.img_h, r.img_w) == (h, w)
        assert r.objects.dtype == np.int64 and np.array_equal(r.objects, np.arange(len(boxes)) % 10)
    cache = RegionFeatures.build(tsv, tmp_path / "cache", progress_bar=False)
    assert len(cache) == 3 and cache.feature_dim == 16
    reopened = RegionFeatures(tmp_path / "cache")  # opened without reading the TSV again
    for img_id, feats, boxes, h, w in images:
        raw = reopened.raw(img_id)
        assert np.array_equal(raw["features"], feats) and np.array_equal(raw["boxes"], boxes)
        sample = reopened.get(img_id, max_boxes=100)
        expected = boxes / np.array([w, h, w, h], np.float32)  # the original's normalisation
        assert np.array_equal(sample.boxes, expected) and np.array_equal(sample.features, feats)
        assert sample.boxes.min() >= 0 and sample.boxes.max() <= 1
    # Built once: a second build opens the cache as it is (the source may be gone).
    tsv.unlink()
    assert RegionFeatures.build(tsv, tmp_path / "cache").ids() == [i for i, *_ in images]
    with_area = reopened.get("COCO_000000", add_box_size=True).boxes
    assert with_area.shape == (10, 5)
    assert np.allclose(with_area[:, 4], (with_area[:, 2] - with_area[:, 0]) * (with_area[:, 3] - with_area[:, 1]))


def test_more_boxes_than_the_model_takes_are_cut_by_score_with_a_warning(tmp_path, caplog):
    rng = np.random.default_rng(3)
    feats, boxes, h, w = random_image(rng, 120)
    conf = rng.permutation(120).astype(np.float32) / 120
    tsv = write_tsv(tmp_path / "many.tsv", [tsv_row("big", feats, boxes, h, w, conf=conf)])
    cache = RegionFeatures.build(tsv, tmp_path / "cache", progress_bar=False)
    with caplog.at_level(logging.WARNING):
        sample = cache.get("big", max_boxes=100)
        cache.get("big", max_boxes=100)
    kept = np.sort(np.argsort(-conf)[:100])
    assert sample.features.shape == (100, 16) and np.array_equal(sample.features, feats[kept])
    assert conf[kept].min() > np.delete(conf, kept).max()  # the 20 dropped are the lowest-scoring
    assert [r.message for r in caplog.records].count(
        "image 'big' has 120 boxes; keeping the 100 highest-scoring ones"
    ) == 1
    assert cache.get("big", max_boxes=36).features.shape == (36, 16)  # the progressive stages' caps


def test_npz_folder_and_hdf5_layouts(tmp_path):
    import h5py

    images = _images(seed=1, counts=(12, 20))
    npz = tmp_path / "train_npz"
    npz.mkdir()
    with h5py.File(tmp_path / "feats.h5", "w") as f:
        for img_id, feats, boxes, h, w in images:
            np.savez(npz / f"{img_id}.npz", img_h=h, img_w=w, num_boxes=len(boxes), features=feats, boxes=boxes)
            blobs = [b64(np.array([h, w, len(boxes)], np.int64))] + ["" for _ in range(4)] + [b64(boxes), b64(feats)]
            f.create_dataset(
                img_id, data=np.array([s.encode() for s in blobs], dtype=object), dtype=h5py.string_dtype()
            )
    for source in (npz, tmp_path / "feats.h5"):
        cache = RegionFeatures.build(source, tmp_path / f"cache-{source.suffix or 'npz'}", progress_bar=False)
        for img_id, feats, boxes, h, w in images:
            sample = cache.get(img_id)
            assert np.array_equal(sample.features, feats) and (sample.img_h, sample.img_w) == (h, w)
            assert np.array_equal(sample.boxes, boxes / np.array([w, h, w, h], np.float32))


def _bad(tmp_path, rows, match):
    tsv = write_tsv(tmp_path / "bad.tsv", rows)
    with pytest.raises(RegionFeatureError, match=match):
        RegionFeatures.build(tsv, tmp_path / "cache", progress_bar=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tsv"]  # no cache, no staging folder left


def test_bad_rows_give_one_clear_error_and_no_cache(tmp_path):
    rng = np.random.default_rng(5)
    feats, boxes, h, w = random_image(rng, 10)
    good = tsv_row("ok", feats, boxes, h, w)
    fields = tsv_row("corrupt", feats, boxes, h, w).split("\t")
    fields[9] = fields[9][:-8] + "!!!!" + fields[9][-4:]
    _bad(tmp_path, [good, "\t".join(fields)], r"bad\.tsv:2: field 'features' is not valid base64")
    empty = tsv_row("empty", feats[:0], boxes[:0], h, w).split("\t")
    _bad(tmp_path, [good, "\t".join(empty)], r"bad\.tsv:2: image 'empty' has 0 boxes")
    other_dim, _, _, _ = random_image(rng, 10, dim=12)
    _bad(
        tmp_path,
        [good, tsv_row("narrow", other_dim, boxes, h, w)],
        r"features of image 'narrow' have dimension 12, expected 16",
    )
    ragged = tsv_row("ragged", feats, boxes, h, w).split("\t")
    ragged[9] = base64.b64encode(feats.tobytes()[:-4]).decode()
    _bad(tmp_path, [good, "\t".join(ragged)], r"features hold 159 values, not a whole number per box")
    _bad(
        tmp_path,
        [good, tsv_row("outside", feats, boxes * 3, h, w)],
        r"image 'outside' has boxes outside its 80x60 frame",
    )
    _bad(tmp_path, [good, good], r"image 'ok' appears twice")
    _bad(tmp_path, [good, "short\t1\t2"], r"bad\.tsv:2: expected 10 tab-separated fields")


def test_a_foreign_folder_is_never_replaced_by_a_cache(tmp_path):
    tsv = write_tsv(tmp_path / "val2014.tsv", [tsv_row(i, f, b, h, w) for i, f, b, h, w in _images()])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me\n")
    for rebuild in (False, True):
        with pytest.raises(RegionFeatureError, match="not a region-feature cache"):
            RegionFeatures.build(tsv, foreign, rebuild=rebuild, progress_bar=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    assert RegionFeatures.build(tsv, tmp_path / "empty", progress_bar=False).ids()
