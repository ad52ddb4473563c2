"""``alicemind veco VERB``: convert, download, pretrain, finetune, evaluate, translate, reproduce."""

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
from alicemind.core.cli.compiling import add_compile_arguments, compile_scope, maybe_optimize
from alicemind.core.cli.schema import Rule, register_recipe_rules

PACKAGE = "veco"
# Closed sets of VECO recipe values (types and ranges of the rest come from core's generic rules).
register_recipe_rules(
    PACKAGE,
    {
        "kind": Rule(str, choices=("classification", "qa", "tagging", "retrieval", "translation")),
        "metric": Rule(str, choices=("f1", "accuracy")),
    },
)


def _layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CliError(f"--keep-decoder-layers takes comma-separated integers, got {text!r}") from None


def _convert(args: argparse.Namespace) -> int:
    from alicemind.veco.runner import convert_checkpoint

    prog = "alicemind veco convert"
    if not Path(args.src).exists():
        raise CliError(f"no checkpoint at {args.src}", prog=prog)
    try:
        model = convert_checkpoint(args.src, args.dst, overwrite=args.overwrite,
                                   keep_decoder_layers=_layers(args.keep_decoder_layers),
                                   resized_dict_map=args.resized_dict_map, dictionary=args.dictionary)  # fmt: skip
    except CheckpointError as err:
        raise CliError(str(err), prog=prog) from None
    print(f"read {args.src} ({model.source_format}) -> wrote {args.dst} ({type(model).__name__}, "
          f"{model.num_parameters():,} parameters)")  # fmt: skip
    return 0


def _download(args: argparse.Namespace) -> int:
    from alicemind.veco import hub  # noqa: F401  (registers the releases)
    from alicemind.veco.runner import convert_checkpoint

    _, path = fetch_released(args.name, offline=args.offline, force=args.force, prog="alicemind veco download")
    if not args.no_convert:
        out = Path(args.output) if args.output else path.parent / "alicemind"
        try:
            convert_checkpoint(path, out)
        except CheckpointError as err:
            raise CliError(f"downloaded {path} but could not read it: {err}", prog="alicemind veco download") from None
        print(f"converted -> {out}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from alicemind.veco.runner import pretrain

    result = pretrain(run_recipe_from_args(PACKAGE, args))
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))
    return 0


def _print_results(results: dict, recipe: dict, output: str | None) -> None:
    from alicemind.veco.finetuning import format_table

    print(format_table(results, recipe.get("published") or None))
    if output:
        Path(output).write_text(json.dumps(results, indent=1), encoding="utf-8")


def _finetune(args: argparse.Namespace) -> int:
    from alicemind.veco.finetuning import finetune

    recipe = run_recipe_from_args(PACKAGE, args)
    result = finetune(recipe)
    print(f"saved {result['output_dir']}")
    _print_results(result["results"], recipe, args.output)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from alicemind.veco.finetuning import evaluate_languages, load_model

    recipe = recipe_from_args(PACKAGE, args)
    if args.model:
        recipe["model"] = args.model
    model, tokenizer, _ = load_model(recipe)
    model = maybe_optimize(model)
    _print_results(evaluate_languages(model, tokenizer, recipe, progress=not args.no_progress), recipe, args.output)
    return 0


def _translate(args: argparse.Namespace) -> int:
    from alicemind.veco.finetuning import load_model
    from alicemind.veco.translation import source_ids, translate_ids

    recipe = recipe_from_args(PACKAGE, args)
    recipe["model"] = args.model
    path = Path(args.input)
    if not path.is_file():
        raise CliError(f"input file not found: {path}", prog="alicemind veco translate")
    lines = path.read_text(encoding="utf-8").splitlines()
    model, tokenizer, _ = load_model({**recipe, "kind": "translation"})
    model = maybe_optimize(model)
    try:
        src_tag, tgt_tag = tokenizer.lang_id(recipe["src_lang"]), tokenizer.lang_id(recipe["tgt_lang"])
    except KeyError as err:
        raise CliError(str(err.args[0]), prog="alicemind veco translate") from None
    ids = tokenizer(lines, add_special_tokens=False)["input_ids"]
    outputs = translate_ids(model, [source_ids(i, tokenizer.eos_token_id, src_tag) for i in ids], tgt_tag,
                            **dict(recipe.get("generation") or {}))  # fmt: skip
    text = "".join(tokenizer.decode(o) + "\n" for o in outputs)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.veco.runner import format_reproduce_table, reproduce, task_overrides

    recipe = recipe_from_args(PACKAGE, args)
    for task in (recipe.get("tasks") or {}).values():  # every task's overrides checked before the first trains
        apply_overrides(load_recipe(PACKAGE, task["recipe"]), task_overrides(recipe, task), package=PACKAGE)
    if not recipe.get("data_dir"):
        raise CliError("set data_dir=FOLDER (one sub-folder per task, as the recipe lists)", prog="alicemind veco")
    print(format_reproduce_table(reproduce(recipe, only=args.tasks or ())))
    return 0


def register(subparsers) -> None:
    """Add ``veco`` and its verbs to the ``alicemind`` command."""
    parser = subparsers.add_parser(
        "veco", help="VECO: cross-lingual encoder (XTREME) and encoder-decoder (WMT14): convert, train, evaluate"
    )
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser(
        "convert", help="convert a released VECO checkpoint (xtreme-released-veco/, fairseq veco-large/)"
    )
    p.add_argument("src", help="NLU folder (XLM-R / sofa / ours) or the fairseq folder (model.pt, dict.txt)")
    p.add_argument("dst", help="output folder (config.json + model.safetensors + tokenizer files)")
    p.add_argument("--keep-decoder-layers", help="fairseq only: comma-separated layers to keep (default: the top 6)")
    p.add_argument("--resized-dict-map", help="fairseq only: 0/1 per line of the pre-training dict.txt")
    p.add_argument("--dictionary", help="fairseq only: the (resized) dict.txt to use instead of the folder's")
    p.add_argument("--overwrite", action="store_true", help="replace DST even if it holds files a save does not write")
    p.set_defaults(func=_convert)

    p = verbs.add_parser("download", help="download veco.large / veco.large.nlg and convert it")
    add_download_arguments(p)
    p.set_defaults(func=_download)

    p = verbs.add_parser("pretrain", help="MLM + CA-MLM pre-training on bilingual pairs and monolingual documents")
    add_recipe_arguments(p, default="pretrain")
    add_run_arguments(p)
    p.set_defaults(func=_pretrain)

    p = verbs.add_parser("finetune", help="fine-tune (XNLI, PAWS-X, XQuAD, MLQA, TyDiQA, PAN-X, UDPOS, WMT14), then "
                         "evaluate every test language")  # fmt: skip
    add_recipe_arguments(p, example="xnli")
    add_run_arguments(p)
    p.add_argument("--output", help="also write the per-language results here (JSON)")
    p.set_defaults(func=_finetune)

    p = verbs.add_parser("evaluate", help="evaluate a model over every test language of a recipe (a table out)")
    add_recipe_arguments(p, example="tatoeba")
    p.add_argument("--model", help="checkpoint folder or registered name (default: the recipe's model)")
    p.add_argument("--output", help="also write the per-language results here (JSON)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they go to stderr)")
    add_compile_arguments(p)
    p.set_defaults(func=compile_scope(_evaluate))

    p = verbs.add_parser("translate", help="translate one sentence per input line (beam 5, the target tag as EOS)")
    p.add_argument("--model", required=True, help="NLG checkpoint folder or registered name")
    p.add_argument("--input", required=True, help="text file, one source sentence per line")
    p.add_argument("--output", help="write here instead of stdout")
    add_recipe_arguments(p, default="wmt14-en-de")
    add_compile_arguments(p)
    p.set_defaults(func=compile_scope(_translate))

    p = verbs.add_parser(
        "reproduce", help="fine-tune + evaluate the README's XTREME or WMT14 table, ours beside the paper's"
    )
    add_recipe_arguments(p, default="reproduce-xtreme")
    p.add_argument("--tasks", nargs="*", help="only these tasks (default: all in the recipe)")
    p.set_defaults(func=_reproduce)
