"""``reproduce``: fine-tune one checkpoint on every task of a results table over seeds, beside the published values."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from alicemind.core.cli import CliError
from alicemind.core.cli.recipes import apply_overrides, load_recipe
from alicemind.latticebert.finetuning import run_finetune


def run_reproduce(
    table: str,
    *,
    checkpoint: str,
    data_dir: str,
    seeds: int = 1,
    output_dir: str = "runs/reproduce",
    overrides: Sequence[str] = (),
    progress_bar: bool = True,
) -> str:
    """Run every task of reproduce recipe ``table``; writes ``results.json`` and ``results.md``, returns the table."""
    spec = load_recipe("latticebert", table)
    tasks = spec.get("tasks") or {}
    if not tasks:
        raise CliError(f"recipe {table!r} lists no tasks")
    if seeds < 1:
        raise CliError(f"--seeds must be at least 1, got {seeds}")
    # Every task's overrides are checked before the first one trains.
    recipes = {name: apply_overrides(load_recipe("latticebert", t["recipe"]), list(overrides), package="latticebert")
               for name, t in tasks.items()}  # fmt: skip
    out = Path(output_dir)
    rows, results = [], {}
    for name, task in tasks.items():
        folder = Path(data_dir) / name if (Path(data_dir) / name).is_dir() else Path(data_dir)
        scores = []
        for seed in range(seeds):
            recipe = json.loads(json.dumps(recipes[name]))
            recipe.update(model=checkpoint, data_dir=str(folder), output_dir=str(out / name / f"seed{seed}"))
            recipe.setdefault("training", {})["seed"] = int(recipe["training"].get("seed", 42)) + seed
            result = run_finetune(recipe, progress_bar=progress_bar)
            scores.append(100 * result.metrics[task.get("metric", "accuracy")])
        mean = statistics.fmean(scores)
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        results[name] = {"scores": scores, "mean": mean, "std": std, "published": task.get("published")}
        published = "-" if task.get("published") is None else f"{task['published']}"
        rows.append(f"| {name} | {task.get('metric', 'accuracy')} | {mean:.2f} ± {std:.2f} ({len(scores)} seeds) "
                    f"| {published} |")  # fmt: skip
    markdown = "\n".join(["| task | metric | ours | published |", "|---|---|---|---|", *rows])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown + "\n")
    return markdown
