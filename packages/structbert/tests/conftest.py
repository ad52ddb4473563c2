"""Shared test setup: helper modules in this folder (structbert_releases, structbert_tasks) import by name.

There is no ``__init__.py`` here, so test files of different packages with the same name (``test_cli.py``) get
distinct module names under pytest's importlib mode.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
