"""Token shards on disk: per-field flat ``.npy`` arrays plus offsets, read back lazily through memory maps.

Layout of a shard directory::

    index.json                      fields, dtypes, shard list, instance counts
    shard-00000/input_ids.npy       all instances' tokens, concatenated
    shard-00000/input_ids.offsets.npy   int64 [n + 1]; instance i is data[offsets[i]:offsets[i + 1]]
    shard-00000/sentence_order_label.npy  a scalar field: one value per instance

Writing the same instances in the same order produces byte-identical files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

INDEX_NAME = "index.json"
FORMAT_NAME = "alicemind-token-shards"
FORMAT_VERSION = 1
_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64")
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _check_dtype(dtype: str, what: str) -> np.dtype:
    if str(dtype) not in _DTYPES:
        raise ValueError(f"{what}: unsupported dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    return np.dtype(str(dtype))


class ShardWriter:
    """Append instances (dicts of int sequences and int scalars) to memory-mappable token shards.

    ``dtype`` is the storage type of every field (uint16 suits vocabularies up to 65,536 ids, uint32 beyond);
    ``field_dtypes`` overrides it per field (e.g. ``{"mlm_labels": "int32"}`` for -100 labels). A value outside
    its field's dtype raises ValueError. Instances must all carry the same fields. Use as a context manager or
    call :meth:`close`; ``index.json`` is written last, so an interrupted write leaves no readable index.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        dtype: str = "uint16",
        field_dtypes: Mapping[str, str] | None = None,
        shard_size: int = 1_000_000,
        overwrite: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.dtype = _check_dtype(dtype, "dtype")
        self.field_dtypes = {k: _check_dtype(v, f"field {k!r}") for k, v in (field_dtypes or {}).items()}
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.shard_size = shard_size
        if (self.directory / INDEX_NAME).exists() and not overwrite:
            raise FileExistsError(f"{self.directory} already holds shards; pass overwrite=True to replace them")
        self.directory.mkdir(parents=True, exist_ok=True)
        # Clear only what a writer creates, never other files a user keeps in the folder.
        (self.directory / INDEX_NAME).unlink(missing_ok=True)
        for old in self.directory.glob("shard-[0-9][0-9][0-9][0-9][0-9]"):
            shutil.rmtree(old)
        self._fields: dict[str, bool] | None = None  # name -> is a sequence
        self._shards: list[dict[str, Any]] = []
        self._files: dict[str, Any] = {}
        self._lengths: dict[str, list[int]] = {}
        self._count = 0
        self._closed = False

    def _dtype(self, name: str) -> np.dtype:
        return self.field_dtypes.get(name, self.dtype)

    def add(self, instance: Mapping[str, Any]) -> None:
        """Append one instance."""
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        arrays = {name: np.asarray(value) for name, value in instance.items()}
        if self._fields is None:
            self._fields = self._declare(arrays)
        elif set(arrays) != set(self._fields):
            raise ValueError(
                f"instance {self._total()} has fields {sorted(arrays)}, but the shards hold {sorted(self._fields)}"
            )
        if not self._files:
            self._open_shard()
        for name, array in arrays.items():
            if (array.ndim == 1) != self._fields[name]:
                kind = "a 1-D sequence" if self._fields[name] else "a scalar"
                raise ValueError(f"field {name!r} of instance {self._total()} must be {kind}, got shape {array.shape}")
            dtype = self._dtype(name)
            if array.size and array.dtype.kind not in "iub":
                raise ValueError(f"field {name!r} must hold integers, got dtype {array.dtype}")
            if array.size:
                info = np.iinfo(dtype)
                low, high = int(array.min()), int(array.max())
                if low < info.min or high > info.max:
                    raise ValueError(
                        f"field {name!r} holds values in [{low}, {high}], outside its dtype {dtype} "
                        f"[{info.min}, {info.max}]; set field_dtypes={{{name!r}: ...}} or a wider dtype"
                    )
            self._files[name].write(array.astype(dtype, copy=False).tobytes())
            self._lengths[name].append(int(array.size))
        self._count += 1
        if self._count == self.shard_size:
            self._finish_shard()

    def _total(self) -> int:
        return sum(s["num_instances"] for s in self._shards) + self._count

    def _declare(self, arrays: Mapping[str, np.ndarray]) -> dict[str, bool]:
        fields = {}
        for name, array in arrays.items():
            if not _FIELD_NAME.match(name):
                raise ValueError(f"field name {name!r} must use only letters, digits and '_'")
            if array.ndim > 1:
                raise ValueError(f"field {name!r} must be a scalar or a 1-D sequence, got shape {array.shape}")
            fields[name] = array.ndim == 1
        return fields

    def _shard_dir(self, index: int) -> Path:
        return self.directory / f"shard-{index:05d}"

    def _open_shard(self) -> None:
        assert self._fields is not None
        shard_dir = self._shard_dir(len(self._shards))
        shard_dir.mkdir(parents=True, exist_ok=True)
        self._files = {name: open(shard_dir / f"{name}.bin", "wb") for name in self._fields}  # noqa: SIM115
        self._lengths = {name: [] for name in self._fields}
        self._count = 0

    def _finish_shard(self) -> None:
        assert self._fields is not None
        shard_dir = self._shard_dir(len(self._shards))
        for name, f in self._files.items():
            f.close()
            raw, dtype = shard_dir / f"{name}.bin", self._dtype(name)
            _bin_to_npy(raw, shard_dir / f"{name}.npy", dtype)
            if self._fields[name]:
                offsets = np.zeros(len(self._lengths[name]) + 1, dtype=np.int64)
                np.cumsum(self._lengths[name], out=offsets[1:])
                np.save(shard_dir / f"{name}.offsets.npy", offsets)
        self._shards.append({"path": shard_dir.name, "num_instances": self._count})
        self._files, self._lengths, self._count = {}, {}, 0

    def close(self) -> dict[str, Any]:
        """Finish the last shard and write ``index.json``; returns the index."""
        if self._closed:
            raise RuntimeError("ShardWriter is already closed")
        if self._files:
            self._finish_shard()
        self._closed = True
        fields = self._fields or {}
        index = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "num_instances": sum(s["num_instances"] for s in self._shards),
            "fields": {n: {"dtype": str(self._dtype(n)), "sequence": seq} for n, seq in fields.items()},
            "shards": self._shards,
        }
        tmp = self.directory / f"{INDEX_NAME}.tmp"
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.directory / INDEX_NAME)
        return index

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # leave no half-written index behind
            for f in self._files.values():
                f.close()
            self._closed = True


def _bin_to_npy(raw: Path, target: Path, dtype: np.dtype) -> None:
    # Copy through memory maps so a shard never has to fit in RAM.
    size = raw.stat().st_size // dtype.itemsize
    out = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=(size,))
    if size:
        out[:] = np.memmap(raw, dtype=dtype, mode="r", shape=(size,))
    out.flush()
    del out
    raw.unlink()


class ShardDataset(Dataset):
    """Read shards written by :class:`ShardWriter`; files are memory-mapped on first access (per process).

    ``dataset[i]`` is a dict: sequence fields as int64 tensors, scalar fields as Python ints.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        index_path = self.directory / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"no shard index {index_path} (write the shards with ShardWriter first)")
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT_NAME or index.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{index_path} is not a {FORMAT_NAME} v{FORMAT_VERSION} index "
                f"(found format={index.get('format')!r}, version={index.get('version')!r})"
            )
        self.fields: dict[str, dict[str, Any]] = index["fields"]
        self.shards: list[dict[str, Any]] = index["shards"]
        counts = [s["num_instances"] for s in self.shards]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._maps: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers map the files themselves
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _shard(self, index: int) -> dict[str, np.ndarray]:
        maps = self._maps.get(index)
        if maps is None:
            shard_dir = self.directory / self.shards[index]["path"]
            maps = {}
            for name, meta in self.fields.items():
                maps[name] = np.load(shard_dir / f"{name}.npy", mmap_mode="r")
                if meta["sequence"]:
                    maps[f"{name}.offsets"] = np.load(shard_dir / f"{name}.offsets.npy")
            self._maps[index] = maps
        return maps

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} instances")
        i %= n
        shard = int(np.searchsorted(self._starts, i, side="right")) - 1
        local = i - int(self._starts[shard])
        maps = self._shard(shard)
        item: dict[str, Any] = {}
        for name, meta in self.fields.items():
            data = maps[name]
            if meta["sequence"]:
                offsets = maps[f"{name}.offsets"]
                item[name] = torch.from_numpy(data[offsets[local] : offsets[local + 1]].astype(np.int64))
            else:
                item[name] = int(data[local])
        return item

    def lengths(self, field: str = "input_ids") -> np.ndarray:
        """Per-instance lengths of a sequence field (e.g. for LengthBucketSampler)."""
        if not self.fields.get(field, {}).get("sequence"):
            raise KeyError(f"{field!r} is not a sequence field; fields: {', '.join(self.fields)}")
        return np.concatenate(
            [np.diff(self._shard(k)[f"{field}.offsets"]) for k in range(len(self.shards))] or [np.zeros(0, np.int64)]
        )
