"""``alicemind structbert reproduce TABLE``: fine-tune every task of a published results table over N seeds and
report ours (mean ± std) beside the published numbers, with the learning curves.

Tables are recipes (``recipes/reproduce-structbert-{en,ch}.yaml``): each task names its fine-tuning recipe, the
metric and the published value. Curves are written as CSV always and as a PNG when matplotlib is installed (it is
not a dependency).
"""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alicemind.core.cli import CliError, apply_overrides, load_recipe


@dataclass
class ReproduceReport:
    """Per task: the published values and our score of every seed (percent); the files written."""

    table: str
    rows: list[dict[str, Any]]
    markdown: str
    report_path: Path
    curves_csv: Path
    curves_png: Path | None


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def format_markdown(table: str, rows: list[dict[str, Any]], seeds: int) -> str:
    """The comparison table: published, sofa (where reported), ours as mean ± std over seeds, and the gap."""
    lines = [f"# {table}", "", f"Ours: mean ± std over {seeds} seed(s), dev set, percent.", "",
             "| Task | Metric | Published | sofa | Ours | Ours − published |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        mean, std = _mean_std(row["scores"])
        sofa = f"{row['sofa']:.2f}" if row.get("sofa") is not None else "–"
        lines.append(
            f"| {row['name']} | {row['metric']} | {row['published']:.2f} | {sofa} | {mean:.2f} ± {std:.2f} "
            f"| {mean - row['published']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def _write_curves(output_dir: Path, curves: dict[str, list[tuple[int, float]]]) -> tuple[Path, Path | None]:
    csv_path = output_dir / "learning_curves.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "step", "loss"])
        for run, points in curves.items():
            writer.writerows([run, step, loss] for step, loss in points)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return csv_path, None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, points in curves.items():
        if points:
            ax.plot(*zip(*points), label=run, linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = output_dir / "learning_curves.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return csv_path, png


def run_reproduce(
    table: str,
    *,
    checkpoint: str | Path,
    data_dir: str | Path,
    seeds: int = 1,
    output_dir: str | Path = "runs/reproduce",
    overrides: list[str] | tuple[str, ...] = (),
    progress_bar: bool = True,
) -> ReproduceReport:
    """Fine-tune each task of ``table`` from ``checkpoint`` with seeds 42, 43, ... and write ``report.md``,
    ``results.json`` and the learning curves into ``output_dir``."""
    from alicemind.structbert.finetuning import run_finetune

    if seeds < 1:
        raise CliError(f"--seeds must be >= 1, got {seeds}")
    spec = load_recipe("structbert", table)
    if "tasks" not in spec:
        raise CliError(f"{table} is not a results table (no 'tasks' list); use reproduce-structbert-en or -ch")
    if not Path(checkpoint).exists():
        raise CliError(f"checkpoint {checkpoint} does not exist")
    # Every task's overrides are checked before the first one trains: a bad value must not cost hours of training.
    recipes = {
        task["name"]: apply_overrides(load_recipe("structbert", task["recipe"]), overrides) for task in spec["tasks"]
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for task in spec["tasks"]:
        row = {**task, "scores": []}
        for k in range(seeds):
            seed = 42 + k
            recipe = copy.deepcopy(recipes[task["name"]])
            run_dir = output_dir / task["name"] / f"seed-{seed}"
            recipe.update(model=str(checkpoint), data_dir=str(data_dir), output_dir=str(run_dir))
            recipe["training"]["seed"] = seed
            result = run_finetune(recipe, progress_bar=progress_bar)
            (metrics,) = result.metrics.values()
            if task["metric"] not in metrics:
                raise CliError(f"{task['name']}: metric {task['metric']!r} not among {sorted(metrics)}")
            row["scores"].append(100 * metrics[task["metric"]])
            curves[f"{task['name']} seed {seed}"] = [(r["step"], r["loss"]) for r in result.log_history if "loss" in r]
        rows.append(row)
    markdown = format_markdown(spec.get("table", table), rows, seeds)
    csv_path, png = _write_curves(output_dir, curves)
    note = f"![learning curves]({png.name})\n" if png else "Learning curves: learning_curves.csv (matplotlib absent).\n"
    report = output_dir / "report.md"
    report.write_text(markdown + "\n" + note)
    (output_dir / "results.json").write_text(json.dumps({"table": spec.get("table", table), "rows": rows}, indent=1))
    return ReproduceReport(spec.get("table", table), rows, markdown, report, csv_path, png)
