"""Resumable, verified downloads into the local cache, with urllib only."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from alicemind.core.hub.errors import ChecksumError, DownloadError, OfflineError
from alicemind.core.version import __version__

__all__ = ["cache_dir", "is_offline", "sha256_file", "download_file"]

_TRUE = {"1", "true", "yes", "on"}
_CHUNK = 1 << 20
_RETRY_DELAY_S = 1.0  # multiplied by the attempt number
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def cache_dir() -> Path:
    """The cache root: ``$ALICEMIND_CACHE`` or ``~/.cache/alicemind``."""
    return Path(os.environ.get("ALICEMIND_CACHE") or Path.home() / ".cache" / "alicemind").expanduser()


def is_offline() -> bool:
    """True when ``$ALICEMIND_OFFLINE`` (or Hugging Face's ``$HF_HUB_OFFLINE``) is 1/true/yes."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("ALICEMIND_OFFLINE", "HF_HUB_OFFLINE"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"alicemind/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            match = _UNSATISFIED_RANGE.search(exc.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:
                raise _AlreadyComplete from None
        retryable = exc.code >= 500 or exc.code in (408, 429)
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}", retryable=retryable) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"cannot reach {url}: {exc}") from exc


class _AlreadyComplete(Exception):
    """The server says the partial file already holds the whole resource."""


def _transfer(url: str, part: Path, expected_size: int | None, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (or rewrite it if the server ignores Range)."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()  # stale partial file from another version of the resource
        offset = 0
    if offset and offset == expected_size:
        return
    try:
        response = _open(url, offset, timeout)
    except _AlreadyComplete:
        return
    with response:
        status = getattr(response, "status", None) or 200
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header is not None else None
        if offset and status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink()
                raise DownloadError(f"{url}: server answered the resume request with a different range; restarting")
            mode, total = "ab", (int(match.group(3)) if match.group(3) != "*" else None)
        else:
            offset, mode = 0, "wb"  # a plain 200: the server ignored Range, so start over
            total = length
        if expected_size is not None and total is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{url}: server reports {total} bytes but {expected_size} were expected")
        received = 0
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
                   disable=not progress, leave=False)  # fmt: skip
        with bar, open(part, mode) as f:
            try:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(
                    f"download of {url} interrupted after {offset + received} bytes ({exc}); "
                    f"the partial file {part} is kept and the next call resumes from it"
                ) from exc
    # http.client returns b"" rather than raising when the peer closes early, so count the bytes ourselves.
    if length is not None and received < length:
        raise DownloadError(
            f"download of {url} interrupted: connection closed after {offset + received} of {offset + length} bytes; "
            f"the partial file {part} is kept and the next call resumes from it"
        )


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    expected_size: int | None = None,
    progress: bool = True,
    resume: bool = True,
    timeout: float = 30,
    retries: int = 2,
    offline: bool | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    Streams into ``dest + ".part"`` with a progress bar; an existing ``.part`` is resumed with an HTTP Range request
    (a server that ignores Range is handled by starting over). A dropped connection is retried ``retries`` times,
    resuming each time; after that :class:`DownloadError` is raised and the ``.part`` is kept for the next call.
    The size and sha256 are checked before the file is moved into place with ``os.replace``; on a mismatch the
    ``.part`` is deleted, an existing ``dest`` is left untouched and :class:`ChecksumError` is raised. In offline
    mode (``offline``, default :func:`is_offline`) raises :class:`OfflineError` without any network call.
    """
    dest = Path(dest)
    if is_offline() if offline is None else offline:
        raise OfflineError(f"offline mode is on (ALICEMIND_OFFLINE/HF_HUB_OFFLINE): not downloading {url}; "
                           f"expected the file at {dest}")  # fmt: skip
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r} (http, https and file are supported)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if not resume:
        part.unlink(missing_ok=True)
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, expected_size, progress, timeout)
            break
        except DownloadError as exc:
            if attempt == retries or not exc.retryable:
                raise
            time.sleep(_RETRY_DELAY_S * (attempt + 1))

    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise ChecksumError(f"{url}: downloaded {size} bytes but {expected_size} were expected; the download was "
                            f"discarded and {dest} left untouched")  # fmt: skip
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256.lower():
            part.unlink()
            raise ChecksumError(f"{url}: sha256 {actual} does not match the expected {sha256.lower()}; the download "
                                f"was discarded and {dest} left untouched")  # fmt: skip
    os.replace(part, dest)
    return dest
