"""TF1 V2 bundle checkpoints read without TensorFlow, from bundles this test writes in the exact on-disk format."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from alicemind.core.checkpoint import CheckpointError, CorruptCheckpointError, list_tf_checkpoint, load_tf_checkpoint
from alicemind.core.checkpoint.tf1 import crc32c, masked_crc32c

TF_DTYPE = {"float32": 1, "float64": 2, "int32": 3, "bool": 10, "int64": 9, "float16": 19}
BFLOAT16 = 14


# ---- a minimal writer: protobuf, LevelDB-format table, tensor bundle -------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value) if value else b""  # proto3 omits zeros


def field_bytes(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def entry_proto(dtype: int, shape: tuple[int, ...], shard: int, offset: int, data: bytes) -> bytes:
    shape_proto = b"".join(field_bytes(2, field_varint(1, d) if d else b"") for d in shape)
    return (field_varint(1, dtype) + field_bytes(2, shape_proto) + field_varint(3, shard) + field_varint(4, offset)
            + field_varint(5, len(data)) + varint(6 << 3 | 5) + struct.pack("<I", masked_crc32c(data)))  # fmt: skip


def build_block(items: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(items):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        last = key
    restarts = restarts or [0]
    return bytes(out) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def write_table(path: Path, items: list[tuple[bytes, bytes]], block_entries: int = 4) -> None:
    out = bytearray()

    def add_block(block: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(block))
        out.extend(block + b"\x00" + struct.pack("<I", masked_crc32c(block + b"\x00")))
        return handle

    index_items = []
    for start in range(0, len(items), block_entries):
        chunk = items[start : start + block_entries]
        index_items.append((chunk[-1][0], add_block(build_block(chunk, restart_interval=2))))
    meta_handle = add_block(build_block([], 1))
    index_handle = add_block(build_block(index_items, 1))
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<II", 0x8B80FB57, 0xDB477524)
    path.write_bytes(bytes(out) + footer)


def write_bundle(prefix: Path, tensors: dict[str, tuple[int, np.ndarray]], num_shards: int = 1) -> None:
    """tensors: name -> (TF dtype enum, little-endian array); tensors are spread round-robin over the shards."""
    shard_data = [bytearray() for _ in range(num_shards)]
    items = [(b"", field_varint(1, num_shards) + field_bytes(3, field_varint(1, 1)))]
    for i, name in enumerate(sorted(tensors)):
        dtype, array = tensors[name]
        shard = i % num_shards
        data = np.ascontiguousarray(array).tobytes()
        items.append((name.encode(), entry_proto(dtype, array.shape, shard, len(shard_data[shard]), data)))
        shard_data[shard] += data
    write_table(Path(f"{prefix}.index"), items)
    for shard, data in enumerate(shard_data):
        Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}").write_bytes(bytes(data))


# ---- tests ----------------------------------------------------------------------------------------------------------


def bert_like_tensors() -> dict[str, tuple[int, np.ndarray]]:
    rng = np.random.default_rng(0)
    tensors: dict[str, tuple[int, np.ndarray]] = {
        "global_step": (TF_DTYPE["int64"], np.array(123456, dtype=np.int64)),
        "bert/embeddings/word_embeddings": (TF_DTYPE["float32"], rng.standard_normal((11, 4), dtype=np.float32)),
        "bert/embeddings/LayerNorm/gamma": (TF_DTYPE["float16"], rng.standard_normal(4).astype(np.float16)),
        "cls/seq_relationship/output_bias": (TF_DTYPE["float64"], rng.standard_normal(3)),
        "input_mask_flags": (TF_DTYPE["bool"], np.array([True, False, True])),
        "position_ids": (TF_DTYPE["int32"], np.arange(6, dtype=np.int32).reshape(2, 3)),
        "empty": (TF_DTYPE["float32"], np.zeros((0, 4), dtype=np.float32)),
    }
    for layer in range(4):
        for part in ("query", "key", "value"):
            name = f"bert/encoder/layer_{layer}/attention/self/{part}/kernel"
            tensors[name] = (TF_DTYPE["float32"], rng.standard_normal((4, 4), dtype=np.float32))
    return tensors


def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@pytest.mark.parametrize("num_shards", [1, 2])
def test_reads_every_tensor_with_its_dtype_and_shape(tmp_path, num_shards):
    tensors = bert_like_tensors()
    prefix = tmp_path / "model.ckpt"
    write_bundle(prefix, tensors, num_shards=num_shards)
    loaded = load_tf_checkpoint(prefix, verify_crc=True)
    assert sorted(loaded) == sorted(tensors)
    for name, (_, array) in tensors.items():
        assert loaded[name].dtype == array.dtype, name
        assert loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    info = list_tf_checkpoint(f"{prefix}.index")
    assert info["bert/embeddings/word_embeddings"].shape == (11, 4)
    assert info["global_step"].shape == () and info["global_step"].dtype == TF_DTYPE["int64"]


def test_bfloat16_is_widened_to_float32(tmp_path):
    values = np.array([1.0, -2.5, 0.15625, 2.0**100], dtype=np.float32)  # exactly representable in bfloat16
    raw = (values.view(np.uint32) >> 16).astype(np.uint16)
    write_bundle(tmp_path / "m", {"w": (BFLOAT16, raw)})
    out = load_tf_checkpoint(tmp_path / "m")["w"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values)


def test_damaged_index_is_detected(tmp_path):
    prefix = tmp_path / "model.ckpt"
    write_bundle(prefix, bert_like_tensors())
    index = Path(f"{prefix}.index")
    good = index.read_bytes()
    index.write_bytes(good[:20] + bytes([good[20] ^ 0xFF]) + good[21:])
    with pytest.raises(CorruptCheckpointError, match="checksum mismatch in block at offset 0"):
        load_tf_checkpoint(prefix)
    index.write_bytes(good[:-10])
    with pytest.raises(CorruptCheckpointError, match="bad table magic"):
        load_tf_checkpoint(prefix)


def test_damaged_or_missing_data_is_detected(tmp_path):
    prefix = tmp_path / "model.ckpt"
    write_bundle(prefix, {"a": (TF_DTYPE["float32"], np.ones(8, dtype=np.float32))})
    data = Path(f"{prefix}.data-00000-of-00001")
    raw = data.read_bytes()
    data.write_bytes(raw[:3] + bytes([raw[3] ^ 0xFF]) + raw[4:])
    assert load_tf_checkpoint(prefix)["a"][0] != 1.0  # without verification the damage goes unnoticed ...
    with pytest.raises(CorruptCheckpointError, match="checksum mismatch in the data of 'a'"):
        load_tf_checkpoint(prefix, verify_crc=True)  # ... with it, it does not
    data.write_bytes(data.read_bytes()[:16])
    with pytest.raises(CorruptCheckpointError, match=r"data for 'a' is truncated \(16 of 32 bytes\)"):
        load_tf_checkpoint(prefix)
    data.unlink()
    with pytest.raises(CorruptCheckpointError, match="model.ckpt.data-00000-of-00001"):
        load_tf_checkpoint(prefix)


def test_string_tensors_are_refused_by_name(tmp_path):
    write_bundle(tmp_path / "m", {"vocab": (7, np.zeros(2, dtype=np.uint8))})
    with pytest.raises(CheckpointError, match="tensor 'vocab' has unsupported TF dtype enum 7"):
        load_tf_checkpoint(tmp_path / "m")
