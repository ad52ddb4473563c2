"""Resolve a registered checkpoint to a local path, downloading and extracting it on first use."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from alicemind.core.hub.download import cache_dir, download_file, is_offline
from alicemind.core.hub.errors import HubError, OfflineError, UnsafeArchiveError
from alicemind.core.hub.registry import CheckpointEntry, get_checkpoint

__all__ = ["checkpoint_cache_path", "extract_archive", "fetch_checkpoint"]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")


def _extracted_name(filename: str) -> str:
    for suffix in _ARCHIVE_SUFFIXES:
        if filename.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return filename + ".extracted"


def checkpoint_cache_path(entry: CheckpointEntry) -> Path:
    """Where ``entry`` lives once fetched: ``cache_dir()/<family>/<name>/<filename>``, or for an archive the folder
    it is extracted to (``<filename>`` without ``.tar.gz``)."""
    folder = cache_dir() / entry.family / entry.name
    return folder / (_extracted_name(entry.filename) if entry.archive else entry.filename)


def _check_members_by_hand(tar: tarfile.TarFile, root: Path) -> None:
    # For Pythons without tarfile extraction filters: refuse links, special files and paths leaving `root`.
    for member in tar.getmembers():
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"archive member {member.name!r} is a link or special file")
        target = (root / member.name).resolve()
        if not target.is_relative_to(root.resolve()):
            raise UnsafeArchiveError(f"archive member {member.name!r} would be written outside {root}")


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a tar archive into the new folder ``dest``, refusing path traversal, absolute links and device files
    (``tarfile``'s ``"data"`` filter). Extraction happens in a temporary sibling folder that is renamed into place,
    so ``dest`` only ever exists complete."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise HubError(f"cannot extract {archive}: {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                _check_members_by_hand(tar, tmp)
                tar.extractall(tmp)
        os.replace(tmp, dest)
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"refusing to extract {archive}: {exc}") from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise HubError(f"cannot extract {archive}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def fetch_checkpoint(name: str, *, offline: bool | None = None, force: bool = False, progress: bool = True) -> Path:
    """Return the local path of the registered checkpoint ``name``, downloading it if it is not cached.

    The file (or, for ``archive`` entries, the folder it extracts to) lives under ``cache_dir()/<family>/<name>/``;
    see :func:`checkpoint_cache_path`. An archive is verified, extracted safely and then deleted. ``force``
    discards the cached copy first. In offline mode (``offline``, default :func:`is_offline`) a missing
    checkpoint raises :class:`OfflineError` naming the expected path, without any network call.
    """
    entry = get_checkpoint(name)
    target = checkpoint_cache_path(entry)
    download_path = target.parent / entry.filename
    offline = is_offline() if offline is None else offline
    if force:
        if target.is_dir():
            shutil.rmtree(target)
        for stale in (target, download_path):
            if stale.is_file():
                stale.unlink()
    if target.exists():
        return target
    if not download_path.exists():
        if offline:
            raise OfflineError(f"offline mode is on and checkpoint {name!r} is not cached: expected {target}"
                               + (f" (from {entry.url})" if entry.url else ""))  # fmt: skip
        if entry.url is None:
            raise HubError(f"checkpoint {name!r} has no public download URL ({entry.description or 'on request'}); "
                           f"place {entry.filename} at {download_path}")  # fmt: skip
        download_file(entry.url, download_path, sha256=entry.sha256, expected_size=entry.size, progress=progress,
                      offline=False)  # fmt: skip
    if entry.archive:
        extract_archive(download_path, target)
        download_path.unlink()
    return target
