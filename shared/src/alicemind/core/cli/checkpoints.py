"""The ``download`` verb's common part: resolve a registered checkpoint to a cached local path for the CLI."""

from __future__ import annotations

import os
from pathlib import Path

from alicemind.core.cli.errors import CliError


def fetch_released(name: str, *, offline: bool = False, force: bool = False, prog: str = "alicemind"):
    """Download (or find cached) the registered checkpoint ``name``; hub errors become a one-line CliError.

    Returns ``(entry, path)``. ``offline`` also sets ``ALICEMIND_OFFLINE`` so nothing later touches the network.
    """
    from alicemind.core.hub import HubError, fetch_checkpoint, get_checkpoint

    if offline:
        os.environ["ALICEMIND_OFFLINE"] = "1"
    try:
        entry = get_checkpoint(name)
        path = fetch_checkpoint(name, offline=offline or None, force=force)
    except KeyError as err:
        raise CliError(str(err.args[0]), prog=prog) from None
    except HubError as err:
        raise CliError(str(err), prog=prog) from None
    print(f"{entry.name}: {path}")
    return entry, Path(path)


def add_download_arguments(parser) -> None:
    """The flags every family's ``download`` verb takes."""
    parser.add_argument("name", help="registered checkpoint name (see 'alicemind list')")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never touch the network (also ALICEMIND_OFFLINE=1); fail clearly if not cached",
    )
    parser.add_argument("--force", action="store_true", help="download again even if cached")
    parser.add_argument("--no-convert", action="store_true", help="only download")
    parser.add_argument("--output", help="folder for the converted model (default: beside the cached file)")
