"""Training verbs of ``alicemind structbert``: pretrain, finetune, evaluate, predict, reproduce, demo.

Recipes are YAML files in ``alicemind/structbert/recipes``; every verb that takes ``--recipe`` also takes
``key=value`` overrides (``training.lr=2e-5``, ``task=mnli,qqp``, ``data_dir=...``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alicemind.core.cli import CliError, add_recipe_arguments, add_run_arguments, run_recipe_from_args
from alicemind.core.cli.compiling import add_compile_arguments, compile_scope


def _pretrain(args: argparse.Namespace) -> int:
    from alicemind.structbert.pretraining import run_pretraining

    result = run_pretraining(
        run_recipe_from_args("structbert", args), progress_bar=not args.no_progress, overrides=args.overrides
    )
    print(f"pre-trained on {result.num_instances} instances -> {result.model_dir}")
    for name in sorted(set(result.initial) | set(result.final)):
        print(f"  held-out {name}: {result.initial.get(name, float('nan')):.4f} -> {result.final.get(name):.4f}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from alicemind.structbert.finetuning import run_finetune

    result = run_finetune(run_recipe_from_args("structbert", args), progress_bar=not args.no_progress)
    print(f"fine-tuned -> {result.model_dir}")
    print(json.dumps(result.metrics, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from alicemind.structbert.finetuning import run_evaluate

    if bool(args.data_dir) == bool(args.input):
        raise CliError("give --data-dir FOLDER (its dev split) or --input FILE (a labelled file), not both")
    output = args.output or Path(args.model).resolve().parent / f"eval_{args.split}.json"
    metrics = run_evaluate(args.model, args.data_dir, output, split=args.split, batch_size=args.batch_size,
                           input_file=args.input)  # fmt: skip
    print(json.dumps(metrics, indent=1))
    print(f"wrote {output}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    if bool(args.data_dir) == bool(args.input):
        raise CliError("give --input FILE|- (one prediction per row) or --data-dir FOLDER (leaderboard files)")
    if args.input:
        from alicemind.structbert.finetuning import predict_rows

        n = predict_rows(args.model, args.input, args.output or "-", batch_size=args.batch_size, fmt=args.format,
                         task_name=args.task)  # fmt: skip
        if args.output and args.output != "-":
            print(f"wrote {n} predictions to {args.output}", file=sys.stderr)
        return 0
    from alicemind.structbert.finetuning import run_predict

    output = args.output or Path(args.model).resolve().parent / "submission"
    for path in run_predict(args.model, args.data_dir, output, batch_size=args.batch_size):
        print(f"wrote {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.structbert.reproduce import run_reproduce

    report = run_reproduce(
        args.table,
        checkpoint=args.checkpoint,
        data_dir=args.data_dir,
        seeds=args.seeds,
        output_dir=args.output,
        overrides=args.overrides,
        progress_bar=not args.no_progress,
    )
    print(report.markdown)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from alicemind.structbert.demo import run_demo

    run_demo(args.output, quick=args.quick, progress_bar=not args.no_progress)
    return 0


def _model_args(parser: argparse.ArgumentParser, output_help: str, input_help: str) -> None:
    parser.add_argument("--model", required=True, help="a folder written by 'alicemind structbert finetune'")
    parser.add_argument("--data-dir", help="task folder (or parent of one folder per task)")
    parser.add_argument("--input", help=input_help)
    parser.add_argument("--output", help=output_help)
    parser.add_argument("--batch-size", type=int, default=32)
    add_compile_arguments(parser)


def add_parser(verbs) -> None:
    """Add the training verbs to the ``alicemind structbert`` sub-parsers."""
    pretrain = verbs.add_parser(
        "pretrain",
        help="pre-train with MLM + word structure (WSO) + sentence structure (SSO) on raw documents",
        description="Raw documents -> WordPiece -> MLM/WSO/SSO instances -> memory-mapped shards -> training. "
        "Example: alicemind structbert pretrain --recipe pretrain-demo corpus=docs.txt",
    )
    add_recipe_arguments(pretrain, default="pretrain-demo")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_run_arguments(pretrain)
    pretrain.set_defaults(func=_pretrain)

    finetune = verbs.add_parser(
        "finetune",
        help="fine-tune on your own file (--recipe classify|regress|tag|qa) or GLUE/CLUE tasks (task=a,b)",
        description="Examples: alicemind structbert finetune --recipe classify data_dir=mydata model=ckpt/ "
        "output_dir=runs/mine  |  alicemind structbert finetune --recipe glue-mnli data_dir=glue/MNLI model=ckpt/",
    )
    add_recipe_arguments(finetune, example="glue-mnli")
    finetune.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_run_arguments(finetune)
    finetune.set_defaults(func=_finetune)

    evaluate = verbs.add_parser("evaluate", help="metrics of a fine-tuned model on a split or file (writes JSON)")
    _model_args(evaluate, "metrics JSON path (default: eval_<split>.json beside the model folder)",
                "a labelled file laid out as the training file (instead of --data-dir)")  # fmt: skip
    evaluate.add_argument("--split", default="dev", help="dev (default), dev_mismatched, train, ...")
    evaluate.set_defaults(func=compile_scope(_evaluate))

    predict = verbs.add_parser(
        "predict",
        help="labels + probabilities per input row (--input FILE|-), or GLUE/CLUE submission files (--data-dir)",
        description="Example: alicemind structbert predict --model runs/mine/model --input new.tsv --output "
        "preds.jsonl (- for stdin/stdout; rows are read and answered a batch at a time).",
    )
    _model_args(predict, "with --input: JSON-lines file or - (default: stdout); with --data-dir: a folder",
                "rows to label: TSV/CSV/JSONL laid out as the training file (a header optional), or - for stdin")  # fmt: skip
    predict.add_argument("--format", choices=("tsv", "csv", "jsonl"), help="input format (default: from suffix)")
    predict.add_argument("--task", help="which task of a multi-task model to predict")
    predict.set_defaults(func=compile_scope(_predict))

    reproduce = verbs.add_parser(
        "reproduce",
        help="run every task of a published table over N seeds; report ours beside the published numbers",
        description="Tables: reproduce-structbert-en (MNLI QNLIv2 QQP SST-2 MRPC), reproduce-structbert-ch "
        "(CMNLI OCNLI TNEWS AFQMC).",
    )
    reproduce.add_argument("table", help="reproduce-structbert-en or reproduce-structbert-ch (or a YAML path)")
    reproduce.add_argument("--checkpoint", required=True, help="pre-trained StructBERT folder or released file")
    reproduce.add_argument("--data-dir", required=True, help="folder holding one sub-folder per task")
    reproduce.add_argument("--seeds", type=int, default=1, help="number of seeds per task (default 1)")
    reproduce.add_argument("--output", default="runs/reproduce", help="report folder")
    reproduce.add_argument("--no-progress", action="store_true")
    reproduce.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="applied to every task's recipe (write them after TABLE)"
    )
    reproduce.set_defaults(func=_reproduce)

    demo = verbs.add_parser(
        "demo",
        help="pre-train a small StructBERT on the bundled corpus, fine-tune it, compare with scratch (~3 min CPU)",
    )
    demo.add_argument("--quick", action="store_true", help="a ~20 s version (fewer steps)")
    demo.add_argument("--output", default="runs/demo", help="working folder")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=_demo)
