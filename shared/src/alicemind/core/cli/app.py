"""The ``alicemind`` command: built-in verbs plus the sub-commands every installed family registers.

A distribution adds commands through an entry point in the group ``alicemind.cli`` whose target is
``register(subparsers)``: it receives the top-level ``argparse`` sub-parsers object, adds its own parser (e.g.
``structbert``) with verbs beneath it, and gives each verb a handler with ``set_defaults(func=handler)``; the
handler gets the parsed namespace and returns an exit status (None means 0). ``register`` must only build
parsers: it is called twice, once on a scratch parser so that a failing plugin leaves no half-built commands.
Name the entry point after the command it adds: ``alicemind NAME ...`` then loads only that plugin.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from alicemind.core.checkpoint.errors import CheckpointError
from alicemind.core.cli.errors import CliError
from alicemind.core.cli.interop import add_export_parser, listing_json
from alicemind.core.cli.recipes import list_recipes
from alicemind.core.config import ConfigError
from alicemind.core.data import DataFormatError, UnknownTaskError
from alicemind.core.hub.errors import HubError
from alicemind.core.layers.embeddings import SequenceTooLongError
from alicemind.core.version import __version__

ENTRY_POINT_GROUP = "alicemind.cli"
# Errors that are the user's or the environment's, not the code's: printed as one line with exit status 2.
# OSError covers a missing file, a full disk, a read-only or forbidden folder and a refused model-folder overwrite.
USER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    UnicodeDecodeError,
    ConfigError,
    CheckpointError,
    HubError,
    DataFormatError,
    UnknownTaskError,
    SequenceTooLongError,
)


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become :class:`CliError` (one line, exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see '{self.prog} --help')", prog=self.prog)

    def format_help(self) -> str:
        """The usual help, plus the recipe keys and their defaults for a verb that takes ``--recipe``."""
        text = super().format_help()
        recipe = getattr(self, "_recipe_help", None)
        if recipe is not None:
            from alicemind.core.cli.recipes import recipe_help

            text += "\n" + recipe_help(*recipe)
        return text


@dataclass
class Plugin:
    """An ``alicemind.cli`` entry point and what became of it."""

    name: str
    distribution: str | None
    version: str | None
    commands: list[str] = field(default_factory=list)
    error: str | None = None


def discover_plugins() -> list[EntryPoint]:
    """The installed ``alicemind.cli`` entry points, by name."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load_plugin(ep: EntryPoint, subparsers: argparse._SubParsersAction) -> Plugin:
    dist = getattr(ep, "dist", None)
    plugin = Plugin(ep.name, dist.name if dist else None, dist.version if dist else None)
    try:
        register = ep.load()
        scratch = ArgumentParser(prog="alicemind", add_help=False).add_subparsers()
        register(scratch)
        names = list(scratch.choices)
        taken = [n for n in names if n in subparsers.choices]
        if taken:
            raise RuntimeError(f"command name(s) {', '.join(taken)} already registered by another plugin")
        register(subparsers)
    except Exception as e:  # a broken plugin must not take the whole command down
        plugin.error = f"{type(e).__name__}: {e}"
        print(f"alicemind: warning: skipping CLI plugin {ep.name!r} ({ep.value}): {plugin.error}", file=sys.stderr)
        return plugin
    for name in names:
        subparsers.choices[name].set_defaults(_command=name)
    plugin.commands = names
    return plugin


def build_parser(plugins: Sequence[EntryPoint] | None = None) -> tuple[ArgumentParser, list[Plugin]]:
    """The full parser (built-ins and plugins) and the list of plugins found."""
    parser = ArgumentParser(
        prog="alicemind", description="AliceMind models: fine-tune, evaluate, convert and download checkpoints."
    )
    parser.add_argument("--version", action="version", version=f"alicemind-core {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    loaded: list[Plugin] = []
    listing = subparsers.add_parser("list", help="installed families with their recipes and checkpoints")
    listing.add_argument("--json", action="store_true", help="machine-readable release metadata")
    listing.set_defaults(func=lambda args: _print_listing(loaded, as_json=args.json), _command="list")
    add_export_parser(subparsers)
    for ep in discover_plugins() if plugins is None else plugins:
        loaded.append(_load_plugin(ep, subparsers))
    return parser, loaded


def _checkpoints(family: str) -> list[str]:
    try:
        from alicemind.core.hub import list_checkpoints  # the hub may be absent in a trimmed install
    except ImportError:
        return []
    try:
        return sorted(entry.name for entry in list_checkpoints(family=family))
    except Exception as e:  # a listing must not crash on one family's broken registry; say what broke
        return [f"(registry error: {type(e).__name__}: {e})"]


def _recipes(family: str) -> list[str]:
    try:
        return list_recipes(family)
    except (CliError, ImportError):
        return []


def _print_listing(plugins: list[Plugin], *, as_json: bool = False) -> int:
    if as_json:
        print(listing_json(plugins, _recipes))
        return 0
    if not plugins:
        print("No alicemind families installed (pip install alicemind-structbert, for example).")
        return 0
    for plugin in plugins:
        origin = f"{plugin.distribution} {plugin.version}" if plugin.distribution else "unknown distribution"
        print(f"{plugin.name}  ({origin})")
        if plugin.error:
            print(f"  failed to load: {plugin.error}")
            continue
        print(f"  commands:    {', '.join(f'alicemind {c}' for c in plugin.commands) or '-'}")
        print(f"  recipes:     {', '.join(_recipes(plugin.name)) or '-'}")
        print(f"  checkpoints: {', '.join(_checkpoints(plugin.name)) or '-'}")
    return 0


def _plugins_for(argv: Sequence[str]) -> list[EntryPoint]:
    # `alicemind structbert ...` needs only the structbert plugin; importing every family (and torch with them)
    # would slow every command down. Help, `list` and unknown names load them all.
    everything = discover_plugins()
    named = [ep for ep in everything if argv and ep.name == argv[0]]
    return named or everything


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error, printed as one line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # `--offline` sets ALICEMIND_OFFLINE for the rest of the verb; an in-process caller gets its environment back.
    offline_before = os.environ.get("ALICEMIND_OFFLINE")
    try:
        return _run(argv)
    finally:
        if offline_before is None:
            os.environ.pop("ALICEMIND_OFFLINE", None)
        else:
            os.environ["ALICEMIND_OFFLINE"] = offline_before


def _run(argv: list[str]) -> int:
    try:
        parser, _ = build_parser(_plugins_for(argv))
        args, extra = parser.parse_known_args(argv)
        # KEY=VALUE overrides may follow flags ("finetune --recipe x --no-progress lr=1e-5"); argparse stops
        # collecting the positional list at the first flag, so gather the stragglers here.
        stray = [tok for tok in extra if tok.startswith("-") or "=" not in tok]
        if extra and (stray or not hasattr(args, "overrides")):
            parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
        if extra:
            args.overrides = [*(args.overrides or []), *extra]
        func = getattr(args, "func", None)
        if func is None:
            command = getattr(args, "_command", args.command)
            raise CliError(f"choose a sub-command (see 'alicemind {command} --help')", prog=f"alicemind {command}")
        status = func(args)
        return 0 if status is None else int(status)
    except SystemExit as e:  # --help and --version exit through argparse
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except CliError as e:
        print(f"{e.prog}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        # These say what is wrong and where (a bad file, config or checkpoint, a full disk, no network access);
        # a traceback adds nothing for a user. Anything else is a bug and keeps its traceback.
        print(f"alicemind: error: {describe_user_error(e)}", file=sys.stderr)
        return 2


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def describe_user_error(err: BaseException) -> str:
    """One line for an error of :data:`USER_ERRORS`: the OS's reason with the path, a file not being UTF-8..."""
    if isinstance(err, UnicodeDecodeError):
        return f"input is not UTF-8 text ({err.reason} at byte {err.start}); convert the file to UTF-8"
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
        if isinstance(err, PermissionError) or err.errno in (errno.EROFS, errno.EACCES):
            text += " (choose a folder you can write to)"
        elif err.errno in (errno.ENOSPC, errno.EDQUOT):
            text += " (free some space or write elsewhere)"
        return text
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return _one_line(str(message)) or type(err).__name__
