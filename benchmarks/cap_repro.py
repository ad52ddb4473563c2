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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cap_repro", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="Hugging Face BERT folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--seeds", type=int, default=3, help=f"how many of {list(SEEDS)} (default 3)")
    parser.add_argument("--epochs", type=int, default=MiniConfig.epochs)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: faster on a busy machine)")
    parser.add_argument("--output", type=Path, default=RESULTS / "cap_mini.md")
    args = parser.parse_args(argv)
    cfg = MiniConfig(model_dir=args.model_dir, seeds=SEEDS[: args.seeds], epochs=args.epochs, threads=args.threads)
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
