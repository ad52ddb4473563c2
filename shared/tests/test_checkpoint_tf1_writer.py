"""save_tf_checkpoint writes bundles that core's TF1 reader reads back exactly, data checksums included."""

from __future__ import annotations

import numpy as np
import pytest

from alicemind.core.checkpoint import list_tf_checkpoint, load_tf_checkpoint
from alicemind.core.checkpoint.tf1_writer import save_tf_checkpoint


def test_round_trip_names_shapes_dtypes_and_values(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "bert/embeddings/word_embeddings": rng.standard_normal((7, 3)).astype(np.float32),
        "bert/encoder/layer_0/attention/self/query/kernel": rng.standard_normal((3, 3)).astype(np.float32),
        "global_step": np.array(160000, dtype=np.int64),
        "scale": np.array([0.5, 1.5], dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    prefix = save_tf_checkpoint(tmp_path / "model.ckpt-160000", tensors)
    info = list_tf_checkpoint(prefix)
    assert sorted(info) == sorted(tensors)
    assert info["bert/embeddings/word_embeddings"].shape == (7, 3)
    back = load_tf_checkpoint(prefix, verify_crc=True)
    for name, array in tensors.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        np.testing.assert_array_equal(back[name], array)


def test_unsupported_dtype_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="complex64"):
        save_tf_checkpoint(tmp_path / "x", {"z": np.zeros(2, dtype=np.complex64)})
