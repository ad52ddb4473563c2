"""safetensors save/load that keeps tied weights tied and never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from alicemind.core.checkpoint.errors import CorruptCheckpointError

__all__ = ["ALIASES_METADATA_KEY", "save_safetensors", "load_safetensors", "read_safetensors_metadata"]

# Metadata entry recording tied tensors: JSON {alias_name: stored_name}.
ALIASES_METADATA_KEY = "alicemind.aliases"


def _view_identity(t: torch.Tensor) -> tuple:
    return (
        t.device,
        t.dtype,
        t.untyped_storage().data_ptr(),
        t.storage_offset(),
        tuple(t.shape),
        tuple(t.stride()),
    )


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``state_dict`` to a safetensors file, atomically (temporary file, then ``os.replace``).

    Tensors that are the same view of the same storage (tied weights) are stored once; the other names are recorded
    under the ``alicemind.aliases`` metadata entry and restored as the same tensor by :func:`load_safetensors`.
    Tensors that only partly overlap another one are stored as independent copies. Non-contiguous tensors are made
    contiguous. ``metadata`` values must be strings.
    """
    path = Path(path)
    meta = {"format": "pt"}
    for key, value in (metadata or {}).items():
        if key == ALIASES_METADATA_KEY:
            raise ValueError(f"metadata key {ALIASES_METADATA_KEY!r} is reserved for tied-tensor aliases")
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"safetensors metadata must map str to str; got {key!r}: {type(value).__name__}")
        meta[key] = value

    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first_name_of_view: dict[tuple, str] = {}
    storages_in_use: set[tuple] = set()
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state_dict[{name!r}] is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach()
        if tensor.numel() > 0:
            identity = _view_identity(tensor)
            if identity in first_name_of_view:
                aliases[name] = first_name_of_view[identity]
                continue
            first_name_of_view[identity] = name
            storage_key = (tensor.device, tensor.untyped_storage().data_ptr())
            if storage_key in storages_in_use:
                # A different view into an already stored storage: safetensors refuses shared memory, so copy it.
                tensor = tensor.clone()
            else:
                storages_in_use.add(storage_key)
        stored[name] = tensor.contiguous()
    if aliases:
        meta[ALIASES_METADATA_KEY] = json.dumps(aliases, sort_keys=True)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(stored, tmp_name, metadata=meta)
        with open(tmp_name, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return the metadata of a safetensors file (without the alias bookkeeping entry)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptCheckpointError(f"cannot read safetensors file {path}: {exc}") from exc
    meta.pop(ALIASES_METADATA_KEY, None)
    return meta


def load_safetensors(path: str | os.PathLike[str], *, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file as ``{name: tensor}``, restoring tied tensors saved by :func:`save_safetensors`.

    Raises :class:`CorruptCheckpointError` naming the file when it is truncated or garbled.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no iteration)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CorruptCheckpointError(f"cannot read safetensors file {path}: {exc}") from exc
    raw_aliases = meta.get(ALIASES_METADATA_KEY)
    if raw_aliases:
        try:
            aliases = json.loads(raw_aliases)
        except json.JSONDecodeError as exc:
            raise CorruptCheckpointError(f"{path}: metadata {ALIASES_METADATA_KEY!r} is not JSON: {exc}") from exc
        for alias, target in aliases.items():
            if target not in tensors:
                raise CorruptCheckpointError(f"{path}: tied tensor {alias!r} points at missing tensor {target!r}")
            tensors[alias] = tensors[target]
    return tensors
