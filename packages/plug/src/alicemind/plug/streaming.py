"""A safetensors writer that fills tensors piece by piece: the header (names, shapes, offsets) is written first,
then each rank's slice goes straight to its place in the file, so no merged tensor ever exists in memory."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}  # fmt: skip
# numpy has no bfloat16: slices are written through an integer view of the same width.
_RAW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class PieceWriter:
    """One safetensors file whose tensors are declared up front and written in pieces along dim 0 or -1."""

    def __init__(self, path: Path, shapes: Mapping[str, torch.Size], dtype: torch.dtype, metadata: Mapping[str, str]):
        self.path, self.dtype, self.itemsize = path, dtype, dtype.itemsize
        header: dict = {"__metadata__": dict(metadata)}
        self.offsets: dict[str, tuple[int, torch.Size]] = {}
        start = 0
        for key, shape in shapes.items():
            end = start + shape.numel() * self.itemsize
            header[key] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [start, end]}
            self.offsets[key] = (start, shape)
            start = end
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.data_start = 8 + len(raw)
        with path.open("wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.truncate(self.data_start + start)

    def _region(self, key: str) -> np.memmap:
        start, shape = self.offsets[key]
        raw = np.dtype(f"i{self.itemsize}") if self.itemsize > 1 else np.dtype("u1")
        return np.memmap(self.path, dtype=raw, mode="r+", offset=self.data_start + start, shape=tuple(shape) or (1,))

    def write(self, key: str, piece: torch.Tensor, dim: int, start: int) -> None:
        """Put ``piece`` at ``start`` along ``dim`` (0 or the last) of tensor ``key``."""
        data = piece.to(self.dtype).contiguous().view(_RAW[self.itemsize]).numpy()
        region = self._region(key)
        if region.ndim == 0 or piece.dim() == 0:
            region[...] = data.reshape(region.shape)
        elif dim == 0:
            region[start : start + piece.shape[0]] = data
        else:
            region[..., start : start + piece.shape[-1]] = data
        region.flush()
        del region

    def read(self, key: str) -> torch.Tensor:
        """The tensor as written so far (used to check replicated tensors across ranks)."""
        region = self._region(key)
        tensor = torch.from_numpy(np.array(region)).view(self.dtype)
        del region
        return tensor.reshape(self.offsets[key][1])

    def close(self) -> None:
        with self.path.open("rb+") as f:
            os.fsync(f.fileno())
