"""``alicemind palm VERB``: convert, download, pretrain, finetune, generate, evaluate, reproduce."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import (
    CliError,
    add_recipe_arguments,
    add_run_arguments,
    apply_overrides,
    load_recipe,
    recipe_from_args,
    run_recipe_from_args,
)
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released
from alicemind.core.cli.schema import Rule, register_recipe_rules

PACKAGE = "palm"
# Closed sets of PALM recipe values (types and ranges of the rest come from core's generic rules).
register_recipe_rules(
    PACKAGE, {"*.lang": Rule(str, choices=("zh", "en")), "optim.style": Rule(str, choices=(None, "presumm-noam"))}
)


def _convert(args: argparse.Namespace) -> int:
    from alicemind.palm.convert import convert_checkpoint, load_model

    if not Path(args.src).exists():
        raise CliError(f"no checkpoint at {args.src}", prog="alicemind palm convert")
    try:
        out = convert_checkpoint(args.src, args.dst, overwrite=args.overwrite)
    except CheckpointError as err:
        raise CliError(str(err), prog="alicemind palm convert") from None
    model = load_model(out)
    print(f"read {args.src} -> wrote {out} ({type(model).__name__}, {model.num_parameters():,} parameters)")
    return 0


def _download(args: argparse.Namespace) -> int:
    from alicemind.palm import hub  # noqa: F401  (registers the releases)
    from alicemind.palm.convert import convert_checkpoint

    _, path = fetch_released(args.name, offline=args.offline, force=args.force, prog="alicemind palm download")
    if not args.no_convert:
        try:
            out = convert_checkpoint(path, Path(args.output) if args.output else path.parent / "alicemind")
        except CheckpointError as err:
            raise CliError(f"downloaded {path} but could not read it: {err}", prog="alicemind palm download") from None
        print(f"converted -> {out}")
    return 0


def _recipe(args: argparse.Namespace) -> dict:
    return recipe_from_args(PACKAGE, args)


def _finetune(args: argparse.Namespace) -> int:
    from alicemind.palm.runner import finetune

    result = finetune(run_recipe_from_args(PACKAGE, args))
    print(json.dumps(result, indent=1))
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from alicemind.palm.runner import pretrain

    result = pretrain(run_recipe_from_args(PACKAGE, args))
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))
    return 0


def _read_lines(path: str, prog: str = "alicemind palm") -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"input file not found: {p}")
    try:
        lines = [line.rstrip("\n") for line in p.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as err:
        raise CliError(
            f"{p} is not UTF-8 text ({err.reason} at byte {err.start}); convert it to UTF-8", prog=prog
        ) from None
    if not lines:
        raise CliError(f"{p} is empty: expected one text per line", prog=prog)
    return lines


def _generate(args: argparse.Namespace) -> int:
    from alicemind.palm.runner import generate_texts, generation_config, load_model_and_tokenizer

    recipe = _recipe(args)
    sources = _read_lines(args.input, "alicemind palm generate")  # before the (slow) model load
    model, tokenizer, _ = load_model_and_tokenizer(args.model, recipe.get("tokenizer"))
    if args.int8_weights:
        from alicemind.core.ops.int8 import quantize_linear_weights

        quantize_linear_weights(model)
    if args.compile:
        from alicemind.core.ops import optimize_for_inference

        model = optimize_for_inference(model)
    outputs = generate_texts(model, tokenizer, sources, generation_config(model, recipe.get("generation")),
                             max_source_length=recipe["max_source_length"], batch_size=recipe["batch_size"],
                             progress=not args.no_progress)  # fmt: skip
    text = "\n".join(outputs) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from alicemind.palm.runner import evaluate_texts

    prog = "alicemind palm evaluate"
    predictions, references = _read_lines(args.predictions, prog), _read_lines(args.references, prog)
    if len(predictions) != len(references):
        raise CliError(
            f"{len(predictions)} predictions but {len(references)} references", prog="alicemind palm evaluate"
        )
    print(json.dumps(evaluate_texts(predictions, references, lang=args.lang), indent=1))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.palm.runner import format_table, reproduce

    recipe = recipe_from_args(PACKAGE, args)
    for task in (recipe.get("tasks") or {}).values():  # every task's overrides checked before the first trains
        apply_overrides(load_recipe(PACKAGE, task["recipe"]), list(recipe.get("overrides") or []), package=PACKAGE)
    if not recipe.get("data_dir"):
        raise CliError("set data_dir=FOLDER (it must hold the task files listed in the recipe)", prog="alicemind palm")
    print(format_table(reproduce(recipe, only=args.tasks or ())))
    return 0


def register(subparsers) -> None:
    """Add ``palm`` and its verbs to the ``alicemind`` command."""
    parser = subparsers.add_parser("palm", help="PALM: convert, download, pre-train, fine-tune, generate, evaluate")
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser("convert", help="convert a released PALM checkpoint (sofa Chinese folder, PALM EN pickle)")
    p.add_argument("src", help="sofa folder (palm_model.pt), model_palm_en_base.pt (or its folder), or ours")
    p.add_argument("dst", help="output folder (config.json + model.safetensors + tokenizer files)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DST even if it holds files a model save does not write (a model folder is always replaced)",
    )
    p.set_defaults(func=_convert)

    p = verbs.add_parser("download", help="download palm.ch.base / palm.en.base and convert it")
    add_download_arguments(p)
    p.set_defaults(func=_download)

    p = verbs.add_parser("pretrain", help="joint PALM pre-training (MLM + continuation) on a raw corpus")
    add_recipe_arguments(p, default="pretrain")
    add_run_arguments(p)
    p.set_defaults(func=_pretrain)

    p = verbs.add_parser("finetune", help="fine-tune on source<TAB>target pairs, then evaluate generation")
    add_recipe_arguments(p, example="finetune-dureader-qg")
    add_run_arguments(p)
    p.set_defaults(func=_finetune)

    p = verbs.add_parser("generate", help="generate one output per input line")
    p.add_argument("--model", required=True, help="checkpoint folder or registered name")
    p.add_argument("--input", required=True, help="text file, one source per line")
    p.add_argument("--output", help="write here instead of stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it goes to stderr)")
    p.add_argument("--compile", action="store_true", help="compile the model first (alicemind.core.ops."
                   "optimize_for_inference: inductor with frozen weights on CPU, CUDA graphs on GPU); each new "
                   "input shape costs a compile, reported on stderr, and the outputs are the same")  # fmt: skip
    p.add_argument("--int8-weights", action="store_true", help="CPU decoding in int8 (alicemind.core.ops.int8): "
                   "every linear layer and the tied output projection with per-channel int8 weights and per-call "
                   "8-bit activations; faster, slightly different outputs (off by default)")  # fmt: skip
    add_recipe_arguments(p, default="generate")
    p.set_defaults(func=_generate)

    p = verbs.add_parser("evaluate", help="BLEU-1..4 and ROUGE of predictions against references (one per line)")
    p.add_argument("--predictions", required=True)
    p.add_argument("--references", required=True)
    p.add_argument("--lang", choices=("zh", "en"), default="zh", help="zh scores characters, en words")
    p.set_defaults(func=_evaluate)

    p = verbs.add_parser("reproduce", help="fine-tune + evaluate the published table (DuReaderQG, -Robust, LCSTS)")
    add_recipe_arguments(p, default="reproduce")
    p.add_argument("--tasks", nargs="*", help="only these tasks (default: all in the recipe)")
    p.set_defaults(func=_reproduce)
