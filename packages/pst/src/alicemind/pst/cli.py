"""``alicemind pst ...``: registered with core's CLI through the ``alicemind.cli`` entry point."""

from __future__ import annotations

import argparse
import json

from alicemind.core.cli import add_recipe_arguments, recipe_from_args


def _finetune(args: argparse.Namespace) -> int:
    from alicemind.pst.recipes_run import run_recipe

    result = run_recipe(recipe_from_args("pst", args), progress_bar=not args.no_progress)
    print(json.dumps(result, indent=1))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.pst.reproduce import reproduce_report

    print(reproduce_report(args.runs, table=args.table), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pst`` command and its verbs (builds parsers only)."""
    parser = subparsers.add_parser("pst", help="PST: parameter-efficient sparse training of any encoder or GPT-2")
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)
    finetune = verbs.add_parser(
        "finetune",
        help="sparse fine-tuning: glue-* (BERT/RoBERTa-style encoders) or e2e / webnlg / dart (GPT-2)",
        description="Example: alicemind pst finetune --recipe glue-sst-2 data_dir=glue/SST-2 model=bert-base-uncased/",
    )
    add_recipe_arguments(finetune)
    finetune.add_argument("--no-progress", action="store_true", help="no progress bar")
    finetune.set_defaults(func=_finetune)
    reproduce = verbs.add_parser(
        "reproduce", help="the paper's numbers beside ours for the finetune runs given (their output folders)"
    )
    reproduce.add_argument("runs", nargs="+", help="output folders of 'alicemind pst finetune' runs")
    reproduce.add_argument("--table", default="auto", help="glue-bert, glue-roberta, nlg-gpt2 or auto")
    reproduce.set_defaults(func=_reproduce)
