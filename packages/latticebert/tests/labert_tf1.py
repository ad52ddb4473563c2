"""Writing TF1 (V2 bundle) checkpoints in the test: an uncompressed LevelDB table of BundleEntryProtos plus one data
file, the on-disk format TensorFlow 1.x saves (``model.ckpt.index`` / ``model.ckpt.data-00000-of-00001``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from alicemind.core.checkpoint.tf1 import masked_crc32c

_DTYPES = {np.dtype("float32"): 1, np.dtype("int64"): 9}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry(array: np.ndarray, offset: int, data: bytes) -> bytes:
    shape = b"".join(_message(2, _field(1, d)) for d in array.shape)
    return (_field(1, _DTYPES[array.dtype]) + _message(2, shape) + _field(4, offset) + _field(5, len(data))
            + _varint(6 << 3 | 5) + struct.pack("<I", masked_crc32c(data)))  # fmt: skip


def _block(items: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for key, value in items:  # every entry a restart point: no shared key prefixes
        out += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    restarts = [0]
    pos = 0
    for key, value in items[:-1]:
        pos += len(_varint(0) + _varint(len(key)) + _varint(len(value))) + len(key) + len(value)
        restarts.append(pos)
    return bytes(out) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def write_tf_checkpoint(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write ``tensors`` (float32 / int64) as ``prefix.index`` + ``prefix.data-00000-of-00001``."""
    data = bytearray()
    items = [(b"", _field(1, 1) + _message(3, _field(1, 1)))]  # header: one shard, version 1
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        raw = array.tobytes()
        items.append((name.encode(), _entry(array, len(data), raw)))
        data += raw
    table = bytearray()

    def add(block: bytes) -> bytes:
        handle = _varint(len(table)) + _varint(len(block))
        table.extend(block + b"\x00" + struct.pack("<I", masked_crc32c(block + b"\x00")))
        return handle

    data_handle = add(_block(items))
    meta = add(_block([]))
    index = add(_block([(items[-1][0], data_handle)]))
    footer = (meta + index).ljust(40, b"\x00") + struct.pack("<II", 0x8B80FB57, 0xDB477524)
    Path(f"{prefix}.index").write_bytes(bytes(table) + footer)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


# Released variable names (models-multimodal.md 3.7) -> our keys; "T" marks a dense kernel ([in, out] in TF).
def released_names(num_layers: int, head: str) -> dict[str, tuple[str, bool]]:
    names = {
        "bert/embeddings/word_embeddings": ("embeddings.word_embeddings.weight", False),
        "bert/embeddings/word_embeddings_projection": ("embeddings.word_projection.weight", True),
        "bert/embeddings/token_type_embeddings": ("embeddings.token_type_embeddings.weight", False),
        "bert/embeddings/LayerNorm/gamma": ("embeddings.norm.weight", False),
        "bert/embeddings/LayerNorm/beta": ("embeddings.norm.bias", False),
        "bert/encoder/start_position_embeddings": ("position_bias.start_position_embeddings.weight", False),
        "bert/encoder/end_position_embeddings": ("position_bias.end_position_embeddings.weight", False),
        "bert/encoder/query_position/kernel": ("position_bias.query_position.weight", True),
        "bert/encoder/query_position/bias": ("position_bias.query_position.bias", False),
        "bert/encoder/key_position/kernel": ("position_bias.key_position.weight", True),
        "bert/encoder/key_position/bias": ("position_bias.key_position.bias", False),
        "bert/encoder/relative_type_embeddings_d1": ("position_bias.relative_type_embeddings.weight", False),
        "bert/encoder/relative_att_reset_theta_1": ("position_bias.reset_theta_1", False),
        "bert/encoder/relative_att_reset_theta_2": ("position_bias.reset_theta_2", False),
        "bert/pooler/dense/kernel": ("pooler.dense.weight", True),
        "bert/pooler/dense/bias": ("pooler.dense.bias", False),
    }
    for i in range(4):
        names[f"bert/encoder/relative_position_scores_{i}"] = (
            f"position_bias.relative_position_scores.{i}.weight",
            False,
        )
    parts = {"attention/self/query": "self_attn.q_proj", "attention/self/key": "self_attn.k_proj",
             "attention/self/value": "self_attn.v_proj", "attention/output/dense": "self_attn.out_proj",
             "intermediate/dense": "ffn.fc_in", "output/dense": "ffn.fc_out"}  # fmt: skip
    norms = {"attention/output/LayerNorm": "self_attn_norm", "output/LayerNorm": "ffn_norm"}
    for layer in range(num_layers):
        for tf, ours in parts.items():
            names[f"bert/encoder/layer_{layer}/{tf}/kernel"] = (f"encoder.layers.{layer}.{ours}.weight", True)
            names[f"bert/encoder/layer_{layer}/{tf}/bias"] = (f"encoder.layers.{layer}.{ours}.bias", False)
        for tf, ours in norms.items():
            names[f"bert/encoder/layer_{layer}/{tf}/gamma"] = (f"encoder.layers.{layer}.{ours}.weight", False)
            names[f"bert/encoder/layer_{layer}/{tf}/beta"] = (f"encoder.layers.{layer}.{ours}.bias", False)
    names = {k: ("bert." + v if head != "model" else v, t) for k, (v, t) in names.items()}
    if head == "pretraining":
        names.update({
            "cls/predictions/transform/dense/kernel": ("cls_predictions.dense.weight", True),
            "cls/predictions/transform/dense/bias": ("cls_predictions.dense.bias", False),
            "cls/predictions/transform/LayerNorm/gamma": ("cls_predictions.norm.weight", False),
            "cls/predictions/transform/LayerNorm/beta": ("cls_predictions.norm.bias", False),
            "cls/predictions/output_bias": ("cls_predictions.bias", False),
            "cls/seq_relationship/output_weights": ("cls_seq_relationship.weight", False),
            "cls/seq_relationship/output_bias": ("cls_seq_relationship.bias", False),
        })  # fmt: skip
    return names


def released_tensors(model: torch.nn.Module, head: str) -> dict[str, np.ndarray]:
    """The model's weights under the released TF names and layouts."""
    state = model.state_dict()
    out = {}
    for tf, (key, transpose) in released_names(model.config.num_hidden_layers, head).items():
        value = state[key].detach().numpy()
        value = value.T if transpose else value
        if tf.endswith(("reset_theta_1", "reset_theta_2")):
            value = value.reshape(1, 1, 1, -1)
        out[tf] = np.ascontiguousarray(value, dtype=np.float32)
    return out


def write_release_folder(folder: Path, tensors: dict[str, np.ndarray], config: dict) -> Path:
    """A released tarball's folder: checkpoint state file, model.ckpt.*, labert_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tf_checkpoint(folder / "model.ckpt", tensors)
    (folder / "checkpoint").write_text(
        'model_checkpoint_path: "/data/labert/model.ckpt"\nall_model_checkpoint_paths: "/data/labert/model.ckpt"\n'
    )
    (folder / "labert_config.json").write_text(json.dumps(config))
    return folder
