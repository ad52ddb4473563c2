"""The registry of released checkpoints: what exists, where it is, how to read it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckpointEntry", "register_checkpoint", "unregister_checkpoint", "get_checkpoint", "list_checkpoints"]


@dataclass(frozen=True)
class CheckpointEntry:
    """One released checkpoint.

    ``format`` names how the family's converter reads it (e.g. ``"structbert-state-dict"``, ``"sofa-dir-tar"``,
    ``"hf-dir"``, ``"palm-en-pickle"``). ``url`` may be ``None`` for checkpoints released only on request (place
    the file in the cache by hand). ``archive`` marks a ``.tar.gz`` to be extracted after download.
    """

    name: str
    family: str
    url: str | None
    filename: str
    format: str
    size: int | None = None
    sha256: str | None = None
    description: str = ""
    config: dict[str, Any] | None = field(default=None, hash=False, compare=True)
    license: str | None = None
    archive: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.family or not self.filename:
            raise ValueError(f"CheckpointEntry needs a name, family and filename; got {self!r}")
        if "/" in self.filename or self.filename in (".", ".."):
            raise ValueError(f"CheckpointEntry.filename must be a bare file name, got {self.filename!r}")
        if self.sha256 is not None and (
            len(self.sha256) != 64 or not all(c in "0123456789abcdef" for c in self.sha256)
        ):
            raise ValueError(f"CheckpointEntry.sha256 of {self.name!r} must be 64 lowercase hex digits")


_REGISTRY: dict[str, CheckpointEntry] = {}


def register_checkpoint(entry: CheckpointEntry, *, overwrite: bool = False) -> CheckpointEntry:
    """Add ``entry`` to the registry. Registering the same entry twice is a no-op; a different entry under a taken
    name raises ``ValueError`` unless ``overwrite``."""
    existing = _REGISTRY.get(entry.name)
    if existing is not None and existing != entry and not overwrite:
        raise ValueError(f"checkpoint {entry.name!r} is already registered (family {existing.family!r})")
    _REGISTRY[entry.name] = entry
    return entry


def unregister_checkpoint(name: str) -> None:
    """Remove a registered checkpoint (``KeyError`` if unknown)."""
    get_checkpoint(name)
    del _REGISTRY[name]


def get_checkpoint(name: str) -> CheckpointEntry:
    """Look a checkpoint up by name; an unknown name raises ``KeyError`` listing close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; {len(_REGISTRY)} checkpoint(s) are registered"
        raise KeyError(f"unknown checkpoint {name!r}{hint}") from None


def list_checkpoints(family: str | None = None) -> list[CheckpointEntry]:
    """All registered checkpoints (of one ``family`` if given), sorted by name."""
    return sorted((e for e in _REGISTRY.values() if family is None or e.family == family), key=lambda e: e.name)
