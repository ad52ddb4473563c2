"""``alicemind cap ...``: registered with core's CLI through the ``alicemind.cli`` entry point."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cap`` command and its verbs (builds parsers only)."""
    subparsers.add_parser("cap", help="ContrastivePruning: CAP-f / CAP-m / CAP-soft for any encoder")
