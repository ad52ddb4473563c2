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
    """A pickle asked for something the sealed unpickler refuses; nothing outside the allow-list ran.

    A global that is not allow-listed, a call with arguments torch.save never writes, a change (BUILD, SETITEM,
    APPEND) to an object the load did not create, a persistent id that is not a torch storage, and the like.
    """


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
