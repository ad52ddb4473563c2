"""Writing TensorFlow 1 (V2 bundle) checkpoints without TensorFlow: the inverse of :mod:`alicemind.core.checkpoint.tf1`.

Used to export weights back to a release's TF1 layout and by family tests that need a checkpoint in the exact
on-disk format the releases use: ``PREFIX.index`` (an uncompressed LevelDB table of ``BundleEntryProto`` with the
``BundleHeaderProto`` under the empty key) plus one ``PREFIX.data-00000-of-00001`` file of raw little-endian bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from alicemind.core.checkpoint.tf1 import masked_crc32c

__all__ = ["save_tf_checkpoint"]

# numpy dtype -> TensorFlow DataType enum (the subset releases store).
_TF_DTYPES = {
    np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9,
    np.dtype("float16"): 19, np.dtype("bool"): 10,
}  # fmt: skip
_TABLE_MAGIC = struct.pack("<II", 0x8B80FB57, 0xDB477524)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""  # proto3 leaves zeros out


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry(array: np.ndarray, offset: int, raw: bytes) -> bytes:
    dims = b"".join(_bytes_field(2, _int_field(1, d)) for d in array.shape)
    return (_int_field(1, _TF_DTYPES[array.dtype]) + _bytes_field(2, dims) + _int_field(4, offset)
            + _int_field(5, len(raw)) + _varint(6 << 3 | 5) + struct.pack("<I", masked_crc32c(raw)))  # fmt: skip


def _block(items: list[tuple[bytes, bytes]]) -> bytes:
    out, restarts = bytearray(), []
    for key, value in items:  # every entry is a restart point: keys are stored whole
        restarts.append(len(out))
        out += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    restarts = restarts or [0]
    return bytes(out) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def save_tf_checkpoint(prefix: str | os.PathLike[str], tensors: Mapping[str, np.ndarray]) -> Path:
    """Write ``tensors`` (name -> array) as a one-shard TF1 checkpoint at ``prefix``; returns the prefix."""
    prefix = Path(prefix)
    data = bytearray()
    items = [(b"", _int_field(1, 1) + _bytes_field(3, _int_field(1, 1)))]  # header: 1 shard, version 1
    for name in sorted(tensors):
        array = np.require(tensors[name], requirements="C")  # ascontiguousarray would make a scalar 1-d
        if array.dtype not in _TF_DTYPES:
            raise TypeError(f"{name}: dtype {array.dtype} has no TF1 checkpoint encoding here")
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        items.append((name.encode(), _entry(array, len(data), raw)))
        data += raw
    table = bytearray()

    def add(block: bytes) -> bytes:
        handle = _varint(len(table)) + _varint(len(block))
        table.extend(block + b"\x00" + struct.pack("<I", masked_crc32c(block + b"\x00")))
        return handle

    data_handle = add(_block(items))
    meta_handle = add(_block([]))
    index_handle = add(_block([(items[-1][0], data_handle)]))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.index").write_bytes(bytes(table) + (meta_handle + index_handle).ljust(40, b"\x00") + _TABLE_MAGIC)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    return prefix
