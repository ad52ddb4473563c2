"""Errors raised by the checkpoint hub."""

from __future__ import annotations

__all__ = ["HubError", "ChecksumError", "OfflineError", "DownloadError", "UnsafeArchiveError"]


class HubError(Exception):
    """Base class of every hub error."""


class ChecksumError(HubError):
    """A downloaded file has the wrong size or sha256; it was discarded."""


class OfflineError(HubError):
    """Offline mode is on and the file is not in the cache; no network call was made."""


class DownloadError(HubError):
    """The transfer failed (HTTP error, dropped connection); a partial file may be kept for resuming.

    ``retryable`` is false for errors that another attempt would not fix (HTTP 4xx such as 404 or 403).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class UnsafeArchiveError(HubError):
    """An archive member would land outside the extraction folder (path traversal, links) or is a special file."""
