"""Run a family's transformers registration when, and only if, transformers gets imported.

``import transformers`` plus its Auto classes costs several seconds; a family import must not pay that (most runs
never touch transformers). A one-shot import hook on ``sys.meta_path`` watches for the top-level ``transformers``
module and runs the pending callbacks right after it has executed.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
from collections.abc import Callable
from types import ModuleType

_TOP = "transformers"
_pending: list[Callable[[], None]] = []  # callbacks to run once transformers is imported
_lock = threading.RLock()


_installed: bool | None = None  # found once: a lookup passes through the watcher below, which then re-arms


def transformers_is_installed() -> bool:
    """True when ``transformers`` can be imported here (found without importing it)."""
    global _installed
    if _TOP in sys.modules:
        return True
    if _installed is None:
        try:
            _installed = importlib.util.find_spec(_TOP) is not None
        except (ImportError, ValueError):
            _installed = False
    return _installed


def call_when_transformers_imported(callback: Callable[[], None]) -> None:
    """Run ``callback`` (a family's registration) once transformers is imported.

    Now, if transformers is already in ``sys.modules``; right after its first import otherwise; never if it is
    not installed.
    """
    with _lock:
        if _TOP in sys.modules and not _is_initialising(sys.modules[_TOP]):
            callback()
            return
        if not transformers_is_installed():
            return
        _pending.append(callback)
        if not any(isinstance(f, _TransformersWatcher) for f in sys.meta_path):
            sys.meta_path.insert(0, _TransformersWatcher())


def _is_initialising(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _run_pending() -> None:
    with _lock:
        callbacks, _pending[:] = list(_pending), []
    for callback in callbacks:
        callback()


class _TransformersWatcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of ``transformers`` so the pending modules run after it."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TOP:
            return None
        sys.meta_path.remove(self)  # one shot: later imports of transformers are plain cache hits
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RunAfterLoader(spec.loader)
        return spec


class _RunAfterLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _run_pending()

    def __getattr__(self, name):  # is_package, get_resource_reader, ... of the real loader
        return getattr(self._loader, name)
