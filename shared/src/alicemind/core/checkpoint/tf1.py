"""Reading TensorFlow 1 (V2 bundle) checkpoints without TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index``, an SSTable (LevelDB table format) mapping each tensor name to a
serialized ``BundleEntryProto`` (the empty key holds a ``BundleHeaderProto``), plus the raw tensor bytes in
``PREFIX.data-SSSSS-of-NNNNN``. TF writes the table without compression; the block checksums (masked CRC32C) are
verified. Tensor-data checksums are optional (``verify_crc``) because a pure-Python CRC is slow on large files.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from alicemind.core.checkpoint.errors import CheckpointError, CorruptCheckpointError

__all__ = ["TFTensorInfo", "crc32c", "masked_crc32c", "list_tf_checkpoint", "load_tf_checkpoint"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic
_TRAILER_SIZE = 5  # compression type byte + masked crc32c
_BFLOAT16 = 14
# tensorflow DataType enum -> numpy dtype (bfloat16 is widened to float32 after reading).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("float32"), 2: np.dtype("float64"), 3: np.dtype("int32"), 4: np.dtype("uint8"),
    5: np.dtype("int16"), 6: np.dtype("int8"), 9: np.dtype("int64"), 10: np.dtype("bool"),
    _BFLOAT16: np.dtype("uint16"), 17: np.dtype("uint16"), 19: np.dtype("float16"), 22: np.dtype("uint32"),
    23: np.dtype("uint64"),
}  # fmt: skip


def _make_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC32C that LevelDB tables and TF bundles store."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int, source: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CorruptCheckpointError(f"{source}: truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes, source: str) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a serialized protobuf message: ints for varint/fixed, bytes for messages."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, source)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos, source)
        elif wire == 1:
            (value,), pos = struct.unpack_from("<Q", buf, pos), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, source)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            (value,), pos = struct.unpack_from("<I", buf, pos), pos + 4
        else:
            raise CorruptCheckpointError(f"{source}: unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise CorruptCheckpointError(f"{source}: truncated protobuf message")
        yield field, value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class TFTensorInfo:
    """One BundleEntryProto: where a tensor's bytes are and how to read them."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int


def _parse_shape(buf: bytes, source: str) -> tuple[int, ...]:
    dims = []
    for field, value in _proto_fields(buf, source):
        if field == 2:  # repeated Dim {int64 size = 1; string name = 2}
            size = 0
            for dim_field, dim_value in _proto_fields(value, source):
                if dim_field == 1:
                    size = _int64(dim_value)
            dims.append(size)
        elif field == 3 and value:
            raise CheckpointError(f"{source}: tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes, source: str) -> TFTensorInfo:
    fields = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": 0}
    for field, value in _proto_fields(buf, source):
        if field == 1:
            fields["dtype"] = value
        elif field == 2:
            fields["shape"] = _parse_shape(value, f"{source} [{name}]")
        elif field in (3, 4, 5):
            fields[("shard_id", "offset", "size")[field - 3]] = _int64(value)
        elif field == 6:
            fields["crc32c"] = value
        elif field == 7:
            raise CheckpointError(
                f"{source}: tensor {name!r} is stored in slices (partitioned variable); not supported"
            )
    return TFTensorInfo(name=name, **fields)


class _Table:
    """Read-only access to every key/value of an uncompressed LevelDB-format table held in memory."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source = data, source
        if len(data) < _FOOTER_SIZE:
            raise CorruptCheckpointError(f"{source}: file too short ({len(data)} bytes) to be a TF checkpoint index")
        footer = data[-_FOOTER_SIZE:]
        lo, hi = struct.unpack("<II", footer[-8:])
        if (hi << 32) | lo != _TABLE_MAGIC:
            raise CorruptCheckpointError(f"{source}: bad table magic number (not a TF checkpoint index or truncated)")
        _, pos = self._handle(footer, 0)  # metaindex block: unused by TF bundles
        self.index_handle, _ = self._handle(footer, pos)

    def _handle(self, buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
        offset, pos = _varint(buf, pos, self.source)
        size, pos = _varint(buf, pos, self.source)
        return (offset, size), pos

    def _block(self, handle: tuple[int, int]) -> bytes:
        offset, size = handle
        end = offset + size
        if end + _TRAILER_SIZE > len(self.data) - _FOOTER_SIZE:
            raise CorruptCheckpointError(f"{self.source}: block at {offset} (+{size}) runs past the end of the file")
        block, kind = self.data[offset:end], self.data[end]
        (stored_crc,) = struct.unpack_from("<I", self.data, end + 1)
        if masked_crc32c(block + bytes([kind])) != stored_crc:
            raise CorruptCheckpointError(f"{self.source}: checksum mismatch in block at offset {offset}")
        if kind != 0:
            raise CorruptCheckpointError(
                f"{self.source}: compressed table block (type {kind}); only uncompressed supported"
            )
        return block

    def _entries(self, block: bytes) -> Iterator[tuple[bytes, bytes]]:
        if len(block) < 4:
            raise CorruptCheckpointError(f"{self.source}: block too short")
        (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
        limit = len(block) - 4 - 4 * num_restarts
        if num_restarts == 0 or limit < 0:
            raise CorruptCheckpointError(f"{self.source}: bad restart count {num_restarts}")
        restarts = set(struct.unpack_from(f"<{num_restarts}I", block, limit))
        pos, key, full_key_offsets = 0, b"", set()
        while pos < limit:
            start = pos
            shared, pos = _varint(block, pos, self.source)
            unshared, pos = _varint(block, pos, self.source)
            value_len, pos = _varint(block, pos, self.source)
            if shared > len(key) or pos + unshared + value_len > limit:
                raise CorruptCheckpointError(f"{self.source}: malformed block entry at {start}")
            if shared == 0:
                full_key_offsets.add(start)
            key = key[:shared] + block[pos : pos + unshared]
            pos += unshared
            yield key, block[pos : pos + value_len]
            pos += value_len
        # Restart points must land on entries that store their whole key.
        if not restarts <= full_key_offsets | ({0} if limit == 0 else set()):
            raise CorruptCheckpointError(f"{self.source}: restart points do not match block entries")

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for _, handle_bytes in self._entries(self._block(self.index_handle)):
            handle, _ = self._handle(handle_bytes, 0)
            yield from self._entries(self._block(handle))


def _prefix(prefix: str | os.PathLike[str]) -> Path:
    text = os.fspath(prefix)
    return Path(text[: -len(".index")] if text.endswith(".index") else text)


def _read_index(prefix: Path) -> tuple[int, bool, dict[str, TFTensorInfo]]:
    index_path = Path(f"{prefix}.index")
    try:
        data = index_path.read_bytes()
    except OSError as exc:
        raise CorruptCheckpointError(f"cannot read TF checkpoint index {index_path}: {exc}") from exc
    source = str(index_path)
    num_shards, big_endian, header_seen = 1, False, False
    entries: dict[str, TFTensorInfo] = {}
    last_key: bytes | None = None
    for key, value in _Table(data, source).items():
        if last_key is not None and key <= last_key:
            raise CorruptCheckpointError(f"{source}: keys out of order at {key!r}")
        last_key = key
        if key == b"":
            header_seen = True
            for field, field_value in _proto_fields(value, source):
                if field == 1:
                    num_shards = field_value
                elif field == 2:
                    big_endian = field_value == 1
            continue
        name = key.decode("utf-8")
        entries[name] = _parse_entry(name, value, source)
    if not header_seen:
        raise CorruptCheckpointError(f"{source}: no bundle header entry")
    return num_shards, big_endian, entries


def list_tf_checkpoint(prefix: str | os.PathLike[str]) -> dict[str, TFTensorInfo]:
    """Return ``{name: TFTensorInfo}`` for every tensor of a TF1 checkpoint, without reading tensor data."""
    return _read_index(_prefix(prefix))[2]


def load_tf_checkpoint(prefix: str | os.PathLike[str], *, verify_crc: bool = False) -> dict[str, np.ndarray]:
    """Read every tensor of a TF1 V2 checkpoint (``PREFIX.index`` + ``PREFIX.data-*``) as numpy arrays.

    Supports float32/64, float16, bfloat16 (returned as float32), and signed/unsigned integer and bool tensors.
    Raises :class:`CorruptCheckpointError` for a damaged index or data file and :class:`CheckpointError` for
    string tensors or partitioned variables.
    """
    prefix = _prefix(prefix)
    num_shards, big_endian, entries = _read_index(prefix)
    handles: dict[int, BinaryIO] = {}
    out: dict[str, np.ndarray] = {}
    try:
        for name, info in entries.items():
            if info.dtype not in _DTYPES:
                raise CheckpointError(f"{prefix}: tensor {name!r} has unsupported TF dtype enum {info.dtype}")
            dtype = _DTYPES[info.dtype].newbyteorder(">" if big_endian else "<")
            count = int(np.prod(info.shape, dtype=np.int64))
            if count * dtype.itemsize != info.size or count < 0:
                raise CorruptCheckpointError(
                    f"{prefix}: tensor {name!r} of shape {info.shape} needs {count * dtype.itemsize} bytes, entry says {info.size}"
                )
            if not 0 <= info.shard_id < num_shards:
                raise CorruptCheckpointError(f"{prefix}: tensor {name!r} in shard {info.shard_id} of {num_shards}")
            if info.shard_id not in handles:
                data_path = Path(f"{prefix}.data-{info.shard_id:05d}-of-{num_shards:05d}")
                try:
                    handles[info.shard_id] = data_path.open("rb")
                except OSError as exc:
                    raise CorruptCheckpointError(f"cannot open TF checkpoint data file {data_path}: {exc}") from exc
            f = handles[info.shard_id]
            f.seek(info.offset)
            raw = f.read(info.size)
            if len(raw) != info.size:
                raise CorruptCheckpointError(
                    f"{prefix}: data for {name!r} is truncated ({len(raw)} of {info.size} bytes)"
                )
            if verify_crc and masked_crc32c(raw) != info.crc32c:
                raise CorruptCheckpointError(f"{prefix}: checksum mismatch in the data of {name!r}")
            array = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
            if info.dtype == _BFLOAT16:
                array = (array.astype(np.uint32) << 16).view(np.float32)
            out[name] = array.reshape(info.shape)
    finally:
        for f in handles.values():
            f.close()
    return out
