"""Built-in verbs for other tools: ``alicemind export onnx`` and the machine-readable ``alicemind list --json``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from alicemind.core.cli.errors import CliError

PROG = "alicemind export onnx"


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    """``alicemind export onnx MODEL_DIR OUT_DIR [--task T] [--quantize int8] [--atol X] [--overwrite]``."""
    from alicemind.core.interop.onnx_export import DEFAULT_ATOL
    from alicemind.core.interop.spec import TASK_NAMES

    export = subparsers.add_parser("export", help="export a saved model folder for another runtime")
    export.set_defaults(_command="export")
    formats = export.add_subparsers(title="formats", dest="format", metavar="FORMAT")
    onnx = formats.add_parser(
        "onnx",
        help="ONNX graphs (dynamic batch and sequence axes), checked against PyTorch in ONNX Runtime",
        description="Export MODEL_DIR to ONNX in OUT_DIR and check the graphs in ONNX Runtime at several batch "
        "and sequence sizes; fails if they differ from PyTorch by more than --atol.",
    )
    onnx.add_argument("model_dir", metavar="MODEL_DIR", help="a saved model folder (config.json + model.safetensors)")
    onnx.add_argument("out_dir", metavar="OUT_DIR", help="folder for the .onnx files and onnx_export.json")
    onnx.add_argument("--task", choices=TASK_NAMES, help="which head to export (default: the class that saved it)")
    onnx.add_argument("--quantize", choices=["int8"], help="also write dynamically int8-quantised graphs")
    onnx.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"tolerance (default {DEFAULT_ATOL:g})")
    onnx.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR")
    onnx.set_defaults(func=_export_onnx, _command="export onnx")


def _export_onnx(args: argparse.Namespace) -> int:
    from alicemind.core.interop.onnx_export import OnnxMismatchError, OnnxUnsupportedError, export_onnx
    from alicemind.core.interop.spec import NoHeadError, UnknownModelTypeError

    try:
        export_onnx(
            args.model_dir, args.out_dir, task=args.task, quantize=args.quantize, atol=args.atol,
            overwrite=args.overwrite,
        )  # fmt: skip
    except (NoHeadError, UnknownModelTypeError, OnnxMismatchError, OnnxUnsupportedError, ModuleNotFoundError) as e:
        message = e.args[0] if isinstance(e, LookupError) and e.args else str(e)
        raise CliError(str(message), prog=PROG) from None
    return 0


def listing_json(plugins: list[Any], recipes) -> str:
    """The ``alicemind list`` content as JSON: per family its distribution, commands, recipes and checkpoints
    (every registry field: URL, size, sha256, format, licence, config)."""
    from alicemind.core.hub import list_checkpoints

    families = []
    for plugin in plugins:
        entry: dict[str, Any] = {
            "name": plugin.name,
            "distribution": plugin.distribution,
            "version": plugin.version,
            "error": plugin.error,
            "commands": [f"alicemind {c}" for c in plugin.commands],
            "recipes": recipes(plugin.name) if not plugin.error else [],
            "checkpoints": [],
        }
        if not plugin.error:
            try:
                entry["checkpoints"] = [dataclasses.asdict(c) for c in list_checkpoints(family=plugin.name)]
            except Exception as e:  # one family's broken registry must not hide the others; say what broke
                entry["error"] = f"registry error: {type(e).__name__}: {e}"
        families.append(entry)
    return json.dumps({"families": families}, indent=2, sort_keys=False)
