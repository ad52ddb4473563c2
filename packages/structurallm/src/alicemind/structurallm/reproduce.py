"""``reproduce``: fine-tune one checkpoint on each task of the paper's table over seeds, beside the published values
and the released-weights figure users report."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from alicemind.core.cli import CliError
from alicemind.core.cli.recipes import apply_overrides, load_recipe
from alicemind.structurallm.finetuning import run_finetune


def run_reproduce(table: str, *, checkpoint: str, data_dir: str, seeds: int = 1, output_dir: str = "runs/reproduce",
                  overrides: Sequence[str] = (), progress_bar: bool = True, only: Sequence[str] = ()) -> str:  # fmt: skip
    """Run the tasks of reproduce recipe ``table`` (``only`` a subset); writes ``results.json`` and ``results.md``
    and returns the markdown table."""
    spec = load_recipe("structurallm", table)
    tasks = {k: v for k, v in (spec.get("tasks") or {}).items() if not only or k in only}
    if not tasks:
        raise CliError(f"recipe {table!r} lists no tasks" + (f" named {list(only)}" if only else ""))
    if seeds < 1:
        raise CliError(f"--seeds must be at least 1, got {seeds}")
    # Every task's overrides are checked before the first one trains.
    recipes = {name: apply_overrides(load_recipe("structurallm", t["recipe"]), list(overrides), package="structurallm")
               for name, t in tasks.items()}  # fmt: skip
    out = Path(output_dir)
    rows, results = [], {}
    for name, task in tasks.items():
        folder = Path(data_dir) / name
        if not folder.is_dir():
            raise CliError(f"{data_dir}: no folder {name}/ with the task's data")
        scores = []
        for seed in range(seeds):
            recipe = json.loads(json.dumps(recipes[name]))
            recipe.update(model=checkpoint, data_dir=str(folder), output_dir=str(out / name / f"seed{seed}"))
            recipe.setdefault("training", {})["seed"] = int(recipe["training"].get("seed", 42)) + seed
            scores.append(100 * run_finetune(recipe, progress_bar=progress_bar).metrics[task["metric"]])
        mean = statistics.fmean(scores)
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        results[name] = {"metric": task["metric"], "scores": scores, "mean": mean, "std": std,
                         "published": task.get("published"), "released": task.get("released")}  # fmt: skip
        rows.append(f"| {name} | {task['metric']} | {mean:.2f} ± {std:.2f} ({len(scores)} seeds) "
                    f"| {task.get('published', '-')} | {task.get('released') or '-'} |")  # fmt: skip
    header = ["| task | metric | ours | paper | released weights (users) |", "|---|---|---|---|---|"]
    markdown = "\n".join([*header, *rows])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown + "\n")
    return markdown
