"""``alicemind pst reproduce RUN...``: our finetune results beside the paper's, one row per run.

The paper's per-task tables (GLUE at 90% sparsity against MaP and MvP; GPT-2 on E2E, WebNLG, DART) could not be
retrieved from public sources when this package was written (reference techniques.md 4.5); ``PAPER`` holds the
numbers that are known, and a missing entry prints as "n/a" rather than a guess. Fill it from the PDF.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alicemind.core.cli import CliError
from alicemind.pst.recipes_common import RESULTS_FILE

#: table -> task -> {metric: value in %}; only numbers read from the paper belong here.
PAPER: dict[str, dict[str, dict[str, float]]] = {"glue-bert": {}, "glue-roberta": {}, "nlg-gpt2": {}}
#: What the paper states in its abstract, printed under every table.
HEADLINE = "Paper: PST needs 1.5% trainable parameters for performance comparable to previous sparsity methods on BERT."


def _load(run: str | Path) -> dict[str, Any]:
    path = Path(run) / RESULTS_FILE
    if not path.is_file():
        raise CliError(f"{run} holds no {RESULTS_FILE}: give output folders of 'alicemind pst finetune'")
    return json.loads(path.read_text(encoding="utf-8"))


def _table_for(result: dict[str, Any], table: str) -> str:
    if table != "auto":
        return table
    if result.get("kind") == "nlg":
        return "nlg-gpt2"
    return "glue-roberta" if "roberta" in str(result.get("model", "")).lower() else "glue-bert"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def reproduce_report(runs: list[str], table: str = "auto") -> str:
    """A Markdown table: per run and metric, our last and best-in-final-window values and the paper's."""
    if table not in ("auto", *PAPER):
        raise CliError(f"unknown table {table!r}; known: auto, {', '.join(PAPER)}")
    lines = ["| table | task | metric | ours (last) | ours (best, final window) | paper | trainable | sparsity |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for run in runs:
        result = _load(run)
        name = _table_for(result, table)
        task = result.get("task") or result.get("dataset") or "?"
        final, best = result.get("final") or {}, result.get("best_in_final_window") or {}
        for metric in [k for k in final if k not in ("step", "sparsity")]:
            paper = PAPER[name].get(task, {}).get(metric)
            lines.append(
                f"| {name} | {task} | {metric} | {_fmt(final.get(metric))} | {_fmt(best.get(metric))} | "
                f"{'n/a' if paper is None else f'{paper:.2f}'} | {100 * result['trainable_fraction']:.2f}% | "
                f"{100 * result['merged_sparsity']:.1f}% |"
            )
    return "\n".join(lines) + "\n\n" + HEADLINE + "\n"
