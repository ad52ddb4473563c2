"""Shared fixtures of the mPLUG tests; helpers live in the uniquely named module mplug_testing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# Test helper modules import by name; no __init__.py, so test modules of different packages with the same file
# name (test_cli.py) never collide.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from more threads, and on a shared 2-core machine two threads per process
    oversubscribe it badly (a 6x slower training test); restored after each test module of this
    package (module scope, so it also covers the module-scoped fixtures that train)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
