"""ChildTuning mini-reproduction: vanilla vs ChildTuning-F vs ChildTuning-D, mean ± std over the paper's seeds.

Writes benchmarks/results/childtuning.md (and .json). Uses our StructBERT model class to load all-MiniLM-L6-v2
when alicemind-structbert is installed (it reads Hugging Face BERT folders), else transformers' BERT. Options as
``alicemind childtuning reproduce``; run ``python benchmarks/childtuning_repro.py --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch import nn

from alicemind.childtuning.cli import config_from_args, register
from alicemind.childtuning.reproduce import format_markdown, run_reproduction, transformers_factory

RESULTS = Path(__file__).resolve().parent / "results"


def structbert_factory(model_dir: str, num_labels: int) -> nn.Module:
    from alicemind.structbert import StructBertForSequenceClassification

    return StructBertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)


def pick_factory(backend: str):
    """(factory, backend name): StructBERT when asked or available under 'auto', else transformers."""
    if backend in ("auto", "structbert"):
        try:
            import alicemind.structbert  # noqa: F401

            return structbert_factory, "structbert"
        except ImportError:
            if backend == "structbert":
                raise
    return transformers_factory, "transformers"


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--backend", choices=("auto", "structbert", "transformers"), default="auto")
    own, rest = pre.parse_known_args(argv)
    parser = argparse.ArgumentParser(prog="childtuning_repro")
    register(parser.add_subparsers(dest="command"))
    defaults = ["--output", str(RESULTS / "childtuning.md"), "--json", str(RESULTS / "childtuning.json")]
    args = parser.parse_args(["childtuning", "reproduce", *defaults, *rest])
    cfg = config_from_args(args)
    factory, cfg.backend = pick_factory(own.backend)
    results = run_reproduction(cfg, factory)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(format_markdown(results), encoding="utf-8")
    args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(format_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
