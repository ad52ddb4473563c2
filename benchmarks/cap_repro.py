"""CAP mini-reproduction: magnitude vs movement vs CAP-m pruning of all-MiniLM-L6-v2 at 50/80/90% sparsity.

Writes benchmarks/results/cap_mini.md (and .json); the same as ``alicemind cap reproduce --mini``. The task is the
offline stdlib-docstring topic task of alicemind-childtuning (installed in the workspace venv).
Run ``python benchmarks/cap_repro.py --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alicemind.cap.reproduce import SEEDS, MiniConfig, format_mini, run_mini

RESULTS = Path(__file__).resolve().parent / "results"


def merge_results(specs: list[str]) -> dict:
    """One result from runs made side by side (one process per arm or seed). Each spec is ``FILE.json`` or
    ``FILE.json:arm,arm`` (only those arms); the per-seed values of a cell are concatenated in the order given (so
    list the seeds of every arm in the same order: the paired differences pair them by position). The last file's
    settings head the table; a note per file says which arms and seeds it measured, how long and at what load."""
    parts = []
    for spec in specs:
        path, _, arms = spec.partition(":")
        part = json.loads(Path(path).read_text(encoding="utf-8"))
        chosen = [a for a in arms.split(",") if a] or list(part["accuracy"])
        parts.append((Path(path), part, chosen))
    last = parts[-1][1]
    merged = dict(last, accuracy={}, notes=[], complete=all(p.get("complete", True) for _, p, _ in parts))
    merged["teacher"] = next((p["teacher"] for _, p, arms in reversed(parts) if p["teacher"]), [])
    merged["config"] = dict(last["config"], sparsities=sorted({float(s) for _, p, arms in parts for a in arms
                                                               for s in p["accuracy"][a]}))  # fmt: skip
    seeds = [s for _, p, _ in parts for s in p["config"]["seeds"]]
    merged["config"]["seeds"] = list(dict.fromkeys(seeds))  # every seed some cell has; the notes say which
    for path, part, arms in parts:
        for arm in arms:
            column = merged["accuracy"].setdefault(arm, {str(s): [] for s in merged["config"]["sparsities"]})
            for sparsity, values in part["accuracy"][arm].items():
                column.setdefault(str(float(sparsity)), []).extend(values)
        load = ", ".join(f"{x:.1f}" if x is not None else "?" for x in part["load_average"])
        cfg = part["config"]
        merged["notes"].append(
            f"{', '.join(arms)} from {path.name} (seeds {list(cfg['seeds'])}, sparsities {list(cfg['sparsities'])}, "
            f"initial/final warm-up {cfg.get('initial_warmup', 1):g}/{cfg.get('final_warmup', 2):g}, "
            f"{part['seconds'] / 60:.1f} min, 1-min load average {load} at start, end)."
        )
    order = [m for m in MiniConfig.methods if m in merged["accuracy"]]
    merged["accuracy"] = {m: merged["accuracy"][m] for m in order + sorted(set(merged["accuracy"]) - set(order))}
    merged["notes"].append("The run-time line above is the last file's; each file's time and load are in its note.")
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cap_repro", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="Hugging Face BERT folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--seeds", type=int, default=3, help=f"how many of {list(SEEDS)} (default 3)")
    parser.add_argument("--epochs", type=int, default=MiniConfig.epochs)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: faster on a busy machine)")
    parser.add_argument(
        "--methods",
        default=",".join(MiniConfig.methods),
        help="comma-separated arms (default: all; one arm per process runs them side by side)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "cap_mini.md")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="no run: one table from these result files (FILE.json or FILE.json:arm,arm), cells concatenated",
    )
    parser.add_argument("--seed-list", type=int, nargs="+", default=None, help="these seeds instead of --seeds")
    parser.add_argument("--sparsities", type=float, nargs="+", default=list(MiniConfig.sparsities))
    args = parser.parse_args(argv)
    if args.merge:
        results = merge_results(args.merge)
        args.output.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        args.output.write_text(format_mini(results), encoding="utf-8")
        print(format_mini(results))
        return 0
    cfg = MiniConfig(
        model_dir=args.model_dir,
        seeds=tuple(args.seed_list or SEEDS[: args.seeds]),
        sparsities=tuple(args.sparsities),
        epochs=args.epochs,
        threads=args.threads,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def write(results: dict) -> None:  # after every arm, so a stopped run keeps what it measured
        args.output.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        args.output.write_text(format_mini(results), encoding="utf-8")

    results = run_mini(cfg, on_progress=write)
    write(results)
    print(format_mini(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
