"""Errors raised by the checkpoint readers and writers."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "CorruptCheckpointError",
    "CheckpointMismatchError",
    "format_keys",
]


class CheckpointError(Exception):
    """Base class of every checkpoint error."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle asked for a global that is not allow-listed; nothing from it was executed."""


class CorruptCheckpointError(CheckpointError):
    """A file is truncated, garbled or in no format we can read."""


class CheckpointMismatchError(CheckpointError):
    """A state dict does not fit a model: missing or unexpected keys, or shape mismatches."""


def format_keys(keys: Iterable[str], limit: int = 20) -> str:
    """Join keys for an error message, shortened to ``limit`` names plus a count of the rest."""
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    if len(keys) > limit:
        shown += f", ... and {len(keys) - limit} more"
    return shown
