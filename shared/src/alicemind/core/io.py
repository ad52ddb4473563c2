"""Atomic model folders: a saved folder appears whole, from one save, or not at all.

:func:`atomic_folder` yields a staging folder beside the target (``.NAME.staging-<random>``); when the ``with``
block ends without an error, the staging folder is renamed onto the target (the old folder, if any, is first
moved aside and deleted after). A failed block deletes the staging folder and leaves the target untouched.

Concurrent saves into one target each assemble their own staging folder, and a rename moves a folder whole, so
the target always holds exactly one save's files: the last one to commit wins, never a mix.

Overwrite semantics:

* A save replaces the target whole: every file of the new folder comes from this save. The exception are the
  ``keep`` files: a model save keeps the old folder's tokenizer files and a tokenizer save keeps its model files,
  so the common ``model.save_pretrained(d); tokenizer.save_pretrained(d)`` still yields one complete folder.
  Write several components as one save (nothing old survives) with :func:`save_folder`, as ``convert`` does.
* A save never silently deletes what it did not write: a target holding a sub-folder or a file whose name no
  save writes (see :func:`register_saved_files`) is refused with :class:`FolderNotReplaceableError` before
  anything is written, unless the caller passes ``overwrite=True``.
* Saving into the staging folder of a save in progress (``model.save_pretrained(staging)`` inside
  ``save_folder``) writes straight into it: the enclosing save commits everything at once.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import threading
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "MODEL_FILES",
    "TOKENIZER_FILES",
    "FolderNotReplaceableError",
    "atomic_folder",
    "atomic_write_text",
    "check_replaceable",
    "register_saved_files",
    "register_tokenizer_files",
    "save_folder",
    "saved_file_names",
    "tokenizer_file_names",
]

# Files each kind of save owns; a save of one kind carries the other kind's files of an old folder over.
MODEL_FILES = ("config.json", "model.safetensors", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
)
_STAGING = ".staging-"
_OLD = ".old-"
# Names (fnmatch patterns) a save may leave in a folder: what a model, config or tokenizer save writes, plus the
# run outputs families write beside them (registered by the family). A folder holding only these may be replaced.
_SAVED_FILES: set[str] = {*MODEL_FILES, *TOKENIZER_FILES}
_TOKENIZER_KEEP: set[str] = set(TOKENIZER_FILES)
_active: set[Path] = set()  # staging folders of saves in progress (a nested save writes straight into them)
_lock = threading.Lock()
_MAX_COMMIT_TRIES = 100


class FolderNotReplaceableError(FileExistsError):
    """The target of a save holds files that no save writes; it is refused rather than deleted."""


def register_saved_files(*patterns: str) -> None:
    """Declare file names (fnmatch patterns) that a saved folder may hold, e.g. a family's ``tasks.json``."""
    _SAVED_FILES.update(patterns)


def register_tokenizer_files(*patterns: str) -> None:
    """Declare files a family's tokenizer save writes (a lexicon, a fairseq ``dict.txt``): like the core
    tokenizer files, a model save into the same folder keeps them."""
    register_saved_files(*patterns)
    _TOKENIZER_KEEP.update(patterns)


def tokenizer_file_names() -> tuple[str, ...]:
    """The name patterns of tokenizer files, core's and the registered ones, which a model save carries over."""
    return tuple(sorted(_TOKENIZER_KEEP))


def saved_file_names() -> frozenset[str]:
    """The registered name patterns of files a save may replace."""
    return frozenset(_SAVED_FILES)


def _is_saved_name(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in _SAVED_FILES)


def check_replaceable(target: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Raise unless a save may replace ``target``: absent, empty, or holding only files a save writes.

    With ``overwrite=True`` any folder may be replaced; a file (not a folder) never is.
    """
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        if not target.exists():  # a concurrent save moved it away between the two checks
            return
        raise FileExistsError(errno.EEXIST, "cannot save a model folder over a file", str(target))
    if overwrite:
        return
    try:
        entries = list(target.iterdir())
    except FileNotFoundError:  # moved away by a concurrent save: nothing left to refuse
        return
    # An entry that vanished while we looked (a concurrent save moved the folder) is not foreign: judge files by
    # name, and only an existing sub-folder as foreign in itself.
    foreign = sorted(e.name for e in entries if e.is_dir() or not _is_saved_name(e.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FolderNotReplaceableError(
            f"{target} is not a model folder (it holds {shown}); refusing to replace it: "
            "choose an empty or new folder, or pass overwrite=True"
        )


def _fsync_dir(path: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_files(folder: Path) -> None:
    # The data must be on disk before the rename makes the folder visible, or a crash could expose empty files.
    for entry in folder.iterdir():
        if entry.is_file():
            fd = os.open(entry, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _carry(old: Path, staging: Path, keep: Collection[str]) -> None:
    """Hard-link (or copy) the ``keep`` files of the old folder that this save did not write."""
    for entry in old.iterdir():
        if not entry.is_file() or (staging / entry.name).exists():
            continue
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in keep):
            try:
                os.link(entry, staging / entry.name)
            except OSError:
                shutil.copy2(entry, staging / entry.name)


def _commit(staging: Path, target: Path, keep: Collection[str], overwrite: bool) -> None:
    tag = staging.name.rsplit(_STAGING, 1)[-1]
    displaced: list[Path] = []
    carried = False
    try:
        for attempt in range(_MAX_COMMIT_TRIES):
            if target.exists():
                old = target.parent / f".{target.name}{_OLD}{tag}-{attempt}"
                try:
                    os.rename(target, old)
                except FileNotFoundError:  # another save moved it away first: try again
                    continue
                displaced.append(old)
                if not carried:
                    # Checked again now that the old folder is ours alone (it was checked before the save began).
                    try:
                        check_replaceable(old, overwrite=overwrite)
                    except FileExistsError:
                        displaced.pop()  # not ours to delete: put it back (or leave it beside, never delete it)
                        try:
                            os.rename(old, target)
                        except OSError:
                            raise FolderNotReplaceableError(
                                f"{target} changed during the save; its old content is kept at {old}"
                            ) from None
                        raise
                    _carry(old, staging, keep)
                    carried = True
            try:
                os.rename(staging, target)
            except OSError as err:
                # Another save committed between our move-aside and our rename: displace its folder too.
                if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue
                raise
            _fsync_dir(target.parent)
            return
        raise OSError(errno.EBUSY, f"gave up saving after {_MAX_COMMIT_TRIES} concurrent replacements", str(target))
    finally:
        for old in displaced:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_folder(target: str | os.PathLike, *, keep: Collection[str] = (), overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder to write into; on success it replaces ``target`` atomically (see module docs).

    ``keep``: fnmatch patterns of files of an old ``target`` to carry into the new folder when this save did not
    write them. ``overwrite``: replace even a folder that holds files no save writes. If ``target`` is itself the
    staging folder of a save in progress, it is yielded as is.
    """
    target = Path(target).absolute()
    with _lock:
        nested = target in _active
    if nested:
        yield target
        return
    check_replaceable(target, overwrite=overwrite)  # before any work, so a refusal costs nothing
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}{_STAGING}{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    with _lock:
        _active.add(staging)
    try:
        yield staging
        _sync_files(staging)
        _commit(staging, target, keep, overwrite)
    finally:
        with _lock:
            _active.discard(staging)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def save_folder(target: str | os.PathLike, *, overwrite: bool = False):
    """One save of several components (model, tokenizer, extra files): nothing of an old ``target`` survives.

    ``with save_folder(dst) as staging: model.save_pretrained(staging); tokenizer.save_pretrained(staging)``.
    """
    return atomic_folder(target, overwrite=overwrite)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write a text file through a temporary file and a rename, so readers never see half of it."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "w", encoding=encoding) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
