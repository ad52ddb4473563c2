"""``reproduce``: fine-tune one checkpoint on every task of the README table, beside the published values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from alicemind.core.cli import CliError
from alicemind.core.cli.recipes import apply_overrides, load_recipe
from alicemind.structvbert.finetuning import run_finetune


def run_reproduce(table: str, *, checkpoint: str, data_dir: str, output_dir: str = "runs/reproduce",
                  overrides: Sequence[str] = (), progress_bar: bool = True) -> str:  # fmt: skip
    """Run every task of reproduce recipe ``table``; writes ``results.json`` and ``results.md``, returns the table."""
    spec = load_recipe("structvbert", table)
    tasks = spec.get("tasks") or {}
    if not tasks:
        raise CliError(f"recipe {table!r} lists no tasks")
    recipes = {name: apply_overrides(load_recipe("structvbert", t["recipe"]), list(overrides), package="structvbert")
               for name, t in tasks.items()}  # fmt: skip
    out = Path(output_dir)
    rows, results = [], {}
    for name, task in tasks.items():
        folder = Path(data_dir) / name if (Path(data_dir) / name).is_dir() else Path(data_dir)
        recipe = dict(recipes[name], model=checkpoint, data_dir=str(folder), output_dir=str(out / name))
        metric = task.get("metric", "accuracy")
        score = 100 * run_finetune(recipe, progress_bar=progress_bar).metrics[metric]
        results[name] = {"score": score, "published": task.get("published")}
        published = "-" if task.get("published") is None else f"{task['published']}"
        rows.append(f"| {name} | {metric} ({task.get('split', 'local validation')}) | {score:.2f} | {published} |")
    markdown = "\n".join(["| task | metric | ours | published |", "|---|---|---|---|", *rows])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown + "\n")
    return markdown
