"""``alicemind childtuning ...``: registered with core's CLI through the ``alicemind.cli`` entry point."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alicemind.childtuning.args import PAPER_SEEDS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``childtuning`` command and its ``reproduce`` verb (builds parsers only)."""
    parser = subparsers.add_parser("childtuning", help="ChildTuning-F / -D fine-tuning technique")
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)
    rep = verbs.add_parser(
        "reproduce",
        help="mini-reproduction: vanilla vs ChildTuning-F vs -D on a few-shot real-text task (CPU, ~10 min)",
    )
    rep.add_argument("--model-dir", default=None, help="Hugging Face BERT folder (default: all-MiniLM-L6-v2)")
    rep.add_argument("--seeds", type=int, default=5, help="how many of the paper's seeds to run (default 5)")
    rep.add_argument("--train-per-class", type=int, default=16)
    rep.add_argument("--eval-per-class", type=int, default=40)
    rep.add_argument("--epochs", type=int, default=None, help="training epochs (default: the ReproConfig default)")
    rep.add_argument("--lr", type=float, default=None)
    rep.add_argument("--reserve-p-f", type=float, default=0.3)
    rep.add_argument("--reserve-p-d", type=float, default=0.3)
    rep.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a busy machine)")
    rep.add_argument("--output", type=Path, default=Path("childtuning.md"), help="Markdown table to write")
    rep.add_argument("--json", type=Path, default=None, help="also write the raw results as JSON")
    rep.set_defaults(func=run_reproduce)


def config_from_args(args: argparse.Namespace):
    """The ReproConfig described by parsed ``reproduce`` arguments."""
    from alicemind.childtuning.reproduce import ReproConfig

    if not 1 <= args.seeds <= len(PAPER_SEEDS):
        raise ValueError(f"--seeds must be between 1 and {len(PAPER_SEEDS)} (the paper's seed list), got {args.seeds}")
    overrides = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr}.items() if v is not None}
    return ReproConfig(
        model_dir=args.model_dir,
        seeds=PAPER_SEEDS[: args.seeds],
        train_per_class=args.train_per_class,
        eval_per_class=args.eval_per_class,
        reserve_p_f=args.reserve_p_f,
        reserve_p_d=args.reserve_p_d,
        threads=args.threads,
        **overrides,
    )


def run_reproduce(args: argparse.Namespace) -> int:
    """Handler of ``alicemind childtuning reproduce``."""
    from alicemind.childtuning.reproduce import format_markdown, run_reproduction

    results = run_reproduction(config_from_args(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(format_markdown(results), encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0
