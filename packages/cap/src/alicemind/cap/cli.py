"""``alicemind cap ...``: registered with core's CLI through the ``alicemind.cli`` entry point."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alicemind.core.cli import CliError, add_recipe_arguments, recipe_from_args
from alicemind.core.cli.compiling import add_compile_arguments, inference_buckets, maybe_optimize
from alicemind.core.cli.schema import Rule, register_recipe_rules

SPARSITY = Rule(float, min=0, max=0.999999)
register_recipe_rules(
    "cap",
    {
        "cap.method": Rule(str, choices=("cap-f", "cap-m", "cap-soft")),
        "cap.scope": Rule(str, choices=("local", "global")),
        "cap.final_sparsity": SPARSITY,
        "cap.initial_sparsity": SPARSITY,
        "cap.sparsities": SPARSITY,
        "cap.tau": Rule(float, min=0, min_exclusive=True),
        "cap.kd_temperature": Rule(float, min=0, min_exclusive=True),
        "cap.max_snapshots": Rule(int, min=0),
        "cap.extra_examples": Rule(int, min=0),
        "cap.bank_dtype": Rule(str, choices=("float16", "bfloat16", "float32")),
        "doc_stride_mode": Rule(str, choices=("overlap", "step")),
        "doc_stride": Rule(int, min=1),
        "max_seq_length": Rule(int, min=8),
    },
)


def _prune(args: argparse.Namespace) -> int:
    from alicemind.cap.glue import run_glue_recipe
    from alicemind.cap.squad import run_squad_recipe

    recipe = recipe_from_args("cap", args)
    runners = {"glue": run_glue_recipe, "squad": run_squad_recipe}
    if recipe.get("kind") not in runners:
        raise CliError(f"recipe kind must be one of {', '.join(runners)}, got {recipe.get('kind')!r}")
    summary = runners[recipe["kind"]](recipe, progress_bar=not args.no_progress)
    print(json.dumps(summary, indent=1, default=str))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from alicemind.cap.export import REPORT_FILE, STRUCTURE_FILE, count_parameters, load_pruned
    from alicemind.cap.glue import encode, make_eval_fn, require_transformers, task_folder
    from alicemind.core.data import DataCollatorWithPadding, get_task, load_task_examples

    transformers = require_transformers()
    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise CliError(f"{folder} is not a pruned model folder (no config.json); give an 'alicemind cap prune' output")
    config = transformers.AutoConfig.from_pretrained(str(folder))
    archs = getattr(config, "architectures", None) or ["AutoModelForSequenceClassification"]
    model_cls = getattr(transformers, archs[0], None)
    if model_cls is None:
        raise CliError(f"transformers has no class {archs[0]} (from {folder}/config.json)")
    # eval() before compiling: the compiled view's eval() would hand back the eager module.
    model = maybe_optimize(load_pruned(model_cls, folder).eval(), args)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(args.tokenizer or folder))
    # Under --compile ragged batches are padded to a few bucket lengths, so only a handful of shapes compile.
    buckets = inference_buckets(args.max_seq_length, args)
    collate = DataCollatorWithPadding(pad_token_id=tokenizer.pad_token_id or 0, bucket_lengths=buckets)
    if args.task.lower() == "squad":
        metrics = _squad_metrics(args, tokenizer, collate, model)
        task_name = "squad"
    else:
        task = get_task(args.task)
        examples = load_task_examples(task, task_folder(args.data_dir, task), args.split)
        features = encode(tokenizer, task, examples, args.max_seq_length)
        metrics = make_eval_fn(task, features, collate, args.batch_size)(model)
        task_name = task.name
    result = {"task": task_name, "split": args.split, "parameters": count_parameters(model), **metrics}
    for name in (STRUCTURE_FILE, REPORT_FILE):
        if (folder / name).is_file():
            report = json.loads((folder / name).read_text(encoding="utf-8"))
            result["sparsity"] = report.get("overall", report.get("heads_per_layer"))
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def _squad_metrics(args: argparse.Namespace, tokenizer, collate, model) -> dict[str, float]:
    from alicemind.cap.squad import encode_windows, make_squad_eval_fn
    from alicemind.core.data.own_spans import read_squad

    path = Path(args.data_dir)
    path = path if path.is_file() else path / f"{args.split}-v1.1.json"
    if not path.is_file():
        raise CliError(f"{path} does not exist: give --data-dir a SQuAD v1.1 JSON file or its folder")
    examples = read_squad(path)
    features = encode_windows(tokenizer, examples, max_length=args.max_seq_length, doc_stride=args.doc_stride)
    return make_squad_eval_fn(examples, features, collate, args.batch_size)(model)


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.cap import reproduce

    if args.mini:
        cfg = reproduce.MiniConfig(model_dir=args.model_dir, threads=args.threads)
        if args.seeds is not None:
            if not 1 <= args.seeds <= len(reproduce.SEEDS):
                raise CliError(f"--seeds must be between 1 and {len(reproduce.SEEDS)}, got {args.seeds}")
            cfg.seeds = reproduce.SEEDS[: args.seeds]
        results = reproduce.run_mini(cfg)
        text = reproduce.format_mini(results)
        out = Path(args.output or "cap_mini.md")
        out.write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(text)
        return 0
    try:
        text = reproduce.paper_table(args.runs)
    except FileNotFoundError as err:
        raise CliError(str(err)) from None
    print(text, end="")
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cap`` command and its verbs (builds parsers only)."""
    parser = subparsers.add_parser(
        "cap", help="ContrastivePruning: CAP-f (heads + FFN neurons), CAP-m / CAP-soft (movement) for any encoder"
    )
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)
    prune = verbs.add_parser(
        "prune",
        help="prune a pre-trained encoder on a GLUE task or SQuAD with a fine-tuned teacher",
        description="CAP-f recipes (glue-mnli, glue-qqp, glue-sst-2, squad) run the iterative 10%..90% loop and keep "
        "every step's smaller model in output_dir/step-K/model; the -cap-m / -cap-soft recipes (glue-mnli, glue-qqp, "
        "squad: the tasks the original has unstructured scripts for) run movement pruning and write output_dir/model "
        "with a per-matrix sparsity report. Example: alicemind cap prune --recipe glue-sst-2 data_dir=glue/SST-2 "
        "model=bert-base-uncased/ teacher=bert-sst2/ output_dir=runs/cap-sst2; SQuAD: --recipe squad "
        "data_dir=squad/ (train-v1.1.json, dev-v1.1.json) model=bert-base-uncased/ teacher=bert-squad/",
    )
    add_recipe_arguments(prune, default="glue-sst-2")
    prune.add_argument("--no-progress", action="store_true", help="no progress bars")
    prune.set_defaults(func=_prune)
    evaluate = verbs.add_parser("evaluate", help="evaluate a pruned model folder on a GLUE task's or SQuAD's dev set")
    evaluate.add_argument("--model", required=True, help="a folder written by 'alicemind cap prune' (or export_pruned)")
    evaluate.add_argument("--data-dir", required=True, help="the task folder (or a folder with one per task); SQuAD: "
                          "the folder of dev-v1.1.json or the file")  # fmt: skip
    evaluate.add_argument("--task", required=True, help="GLUE task name (sst-2, qqp, mnli, ...) or squad")
    evaluate.add_argument("--split", default="dev")
    evaluate.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model folder)")
    evaluate.add_argument("--max-seq-length", type=int, default=128, help="128 for GLUE; SQuAD recipes use 384")
    evaluate.add_argument("--doc-stride", type=int, default=128, help="SQuAD: pieces shared by two windows")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", default=None, help="also write the metrics JSON here")
    add_compile_arguments(evaluate)
    evaluate.set_defaults(func=_evaluate)
    reproduce = verbs.add_parser(
        "reproduce",
        help="the paper's numbers beside ours for prune runs, or --mini: the laptop reproduction",
        description="Without --mini: every number of the paper that could be read (QQP 90% CAP-m / CAP-soft, the "
        "abstract's 97% retention) with ours beside it for the given 'alicemind cap prune' output folders, our "
        "other runs, and the movement-pruning baselines CAP-m / CAP-soft build on. --mini: the laptop-scale "
        "reproduction (all-MiniLM-L6-v2, CAP vs magnitude vs movement at 50/80/90%).",
    )
    reproduce.add_argument(
        "runs", nargs="*", help="output folders of 'alicemind cap prune' runs (none: the paper alone)"
    )
    reproduce.add_argument("--mini", action="store_true", help="all-MiniLM-L6-v2 on a real offline task (~25 min CPU)")
    reproduce.add_argument("--model-dir", default=None, help="Hugging Face BERT folder (default: all-MiniLM-L6-v2)")
    reproduce.add_argument("--seeds", type=int, default=None, help="number of seeds for --mini (default 3)")
    reproduce.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a busy machine)")
    reproduce.add_argument("--output", default=None, help="Markdown file to write")
    reproduce.set_defaults(func=_reproduce)
