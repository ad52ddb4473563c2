"""Reading PyTorch checkpoints of every vintage the releases use, without running foreign code."""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint.errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError
from alicemind.core.checkpoint.safe_pickle import placeholders_to_dicts, restricted_pickle_module
from alicemind.core.checkpoint.safetensors_io import load_safetensors

__all__ = ["detect_format", "load_checkpoint_object", "load_state_dict_file"]

# torch.save's legacy (pre-1.6) format starts with this number pickled as a LONG1.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STATE_DICT_KEYS = ("model", "module", "state_dict", "model_state_dict")


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the format of a checkpoint file from its content.

    One of ``"safetensors"``, ``"torch-zip"`` (torch.save since 1.6), ``"torch-legacy"`` (torch.save before 1.6)
    or ``"pickle"`` (a plain pickle). Raises :class:`CorruptCheckpointError` for anything else.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise CorruptCheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if len(head) == 0:
        raise CorruptCheckpointError(f"checkpoint {path} is empty")
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 2 <= header_len <= size - 8:
            return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[:1] == b"\x80":
        # Protocol >= 2 pickle. torch's legacy format opens with a pickled magic number (LONG1: opcode 0x8a, 10
        # bytes); with protocol >= 4 a FRAME header comes first, so look for it near the start.
        if b"\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little") in head[:24]:
            return "torch-legacy"
        return "pickle"
    raise CorruptCheckpointError(
        f"checkpoint {path} is in no format we recognise (first bytes {head[:8]!r}); expected safetensors, "
        "a torch.save archive or a pickle"
    )


def _torch_load_safely(path: Path, fmt: str, map_location: Any, allow_placeholders: Iterable[str], mmap: bool) -> Any:
    """torch.load through the sealed unpickler; every failure becomes a CheckpointError.

    torch's own ``weights_only`` unpickler is not the first try: on a mangled file it lets ``struct.error``,
    ``IndexError``, ``AssertionError`` or ``KeyError`` escape, and a deeply nested tuple key crashes the process.
    The sealed unpickler refuses all of these with one of our two error classes.
    """
    use_mmap = mmap and fmt == "torch-zip"
    module = restricted_pickle_module(path, allow_placeholders)
    try:
        # weights_only=False is safe here: every opcode and global goes through the sealed unpickler's rules.
        obj = torch.load(path, map_location=map_location, pickle_module=module, weights_only=False, mmap=use_mmap)
    except (UnsafeCheckpointError, CorruptCheckpointError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch's archive reader raises many types on damaged input
        raise CorruptCheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return placeholders_to_dicts(obj)


def _plain_pickle_load(path: Path, allow_placeholders: Iterable[str]) -> Any:
    module = restricted_pickle_module(path, allow_placeholders)
    try:
        with path.open("rb") as f:
            obj = module.load(f, encoding="utf-8")
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise CorruptCheckpointError(f"cannot read pickle {path}: {type(exc).__name__}: {exc}") from exc
    return placeholders_to_dicts(obj)


def load_checkpoint_object(
    path: str | os.PathLike[str],
    *,
    map_location: Any = "cpu",
    allow_placeholders: Iterable[str] = (),
    mmap: bool = False,
) -> Any:
    """Load the whole top-level object of a checkpoint file, safely.

    Returns e.g. PALM EN's ``{'model': ..., 'opt': {...}, 'optims': [...]}``, fairseq's ``{'model', 'args'|'cfg', ...}``
    or DeepSpeed's ``{'module': ..., ...}``. Pickled objects of allow-listed classes (``argparse.Namespace``, optimizer
    objects, see ``DEFAULT_PLACEHOLDER_GLOBALS``; extend with ``allow_placeholders`` fnmatch patterns) come back as
    plain dicts; any other global raises :class:`UnsafeCheckpointError`. A safetensors file returns its tensors.
    ``mmap`` memory-maps torch zip archives instead of reading them into memory.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "safetensors":
        device = map_location if isinstance(map_location, str | torch.device) else "cpu"
        return load_safetensors(path, device=str(device))
    if fmt == "pickle":
        obj = _plain_pickle_load(path, allow_placeholders)
        if map_location is not None:
            obj = _move_tensors(obj, map_location)
        return obj
    return _torch_load_safely(path, fmt, map_location, allow_placeholders, mmap)


def _move_tensors(obj: Any, map_location: Any) -> Any:
    if isinstance(map_location, str | torch.device):
        if isinstance(obj, torch.Tensor):
            return obj.to(map_location)
        if isinstance(obj, dict):
            for k in list(obj):
                obj[k] = _move_tensors(obj[k], map_location)
        elif isinstance(obj, list):
            obj[:] = [_move_tensors(v, map_location) for v in obj]
    return obj


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def load_state_dict_file(
    path: str | os.PathLike[str],
    *,
    map_location: Any = "cpu",
    allow_placeholders: Iterable[str] = (),
    mmap: bool = False,
) -> dict[str, torch.Tensor]:
    """Load the weights of a checkpoint file as ``{name: tensor}``, detecting the format from the content.

    Reads safetensors, torch zip archives, legacy torch pickles and plain pickles. When the file holds a wrapper
    dict, the state dict is taken from its ``model`` (fairseq, PALM EN), ``module`` (DeepSpeed), ``state_dict`` or
    ``model_state_dict`` entry. Never runs code from the file (see :func:`load_checkpoint_object`).
    """
    path = Path(path)
    obj = load_checkpoint_object(path, map_location=map_location, allow_placeholders=allow_placeholders, mmap=mmap)
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                return dict(obj[key])
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:10]
        raise CheckpointError(
            f"no state dict found in {path}: top-level keys are {json.dumps([str(k) for k in list(obj)[:20]])}; "
            f"expected a mapping of names to tensors or one under {list(_STATE_DICT_KEYS)} "
            f"(non-tensor entries: {bad})"
        )
    raise CheckpointError(f"no state dict found in {path}: the file holds a {type(obj).__name__}, not a dict")
