"""``alicemind mplug reproduce``: the README's tables (models-multimodal.md §4.1, §4.8) with our figures beside them.

Our column holds only what was measured: the parameter count of our model at each released size (built on the
meta device, no weights read), and the metrics of our own ``evaluate``/``finetune`` runs found under ``--runs``
(each writes ``metrics.json`` with its recipe and task). A row no run matches says "not run"; rows whose task the
release has no code for say so.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alicemind.core.cli import CliError

TABLES = ("models", "results", "all")


@dataclass(frozen=True)
class ResultRow:
    """One row of the README's results table and how our runs map onto it."""

    task: str
    dataset: str
    split: str
    metric: str
    base: str
    large: str
    huge: str
    recipes: tuple[str, ...] = ()  # our recipes scoring this row ("" = the release has no code for it)
    keys: tuple[str, ...] = ()  # our metrics.json keys, in the order of the split's " / " parts
    datasets: tuple[str, ...] = ()  # the recipe's ``dataset`` values of this row when one recipe serves several


# README "Headline results", copied (models-multimodal.md §4.8).
README_RESULTS = (
    ResultRow("VQA", "VQA v2", "test-dev / test-std", "Acc", "79.79 / 79.98", "81.27 / 81.26", "82.27 / 82.41",
              ("vqa",), ("vqa_accuracy",)),
    ResultRow("Image captioning", "COCO", "Karpathy test, CE", "CIDEr", "137.5", "141.0", "142.3",
              ("coco-caption",), ("CIDEr",)),
    ResultRow("Image captioning", "COCO", "Karpathy test, CIDEr-opt", "CIDEr", "150.4", "155.1", "158.7",
              ("coco-caption-scst",), ("CIDEr",)),
    ResultRow("Retrieval", "MSCOCO", "5k test (TR / IR)", "R@1", "-", "82.8 / 65.8", "-",
              ("retrieval-coco",), ("txt_r1", "img_r1")),
    ResultRow("Retrieval", "Flickr30K", "1k test (TR / IR)", "R@1", "-", "97.6 / 88.4", "-",
              ("retrieval-flickr",), ("txt_r1", "img_r1")),
    ResultRow("REC", "RefCOCO", "val / testA / testB", "Acc", "-", "92.40 / 94.51 / 88.42", "-",
              ("refcoco",), ("accuracy@0.5",), ("unc", "refcoco")),
    ResultRow("REC", "RefCOCO+", "val / testA / testB", "Acc", "-", "86.02 / 90.17 / 78.17", "-",
              ("refcoco",), ("accuracy@0.5",), ("unc+", "refcoco+")),
    ResultRow("REC", "RefCOCOg", "val-u / test-u", "Acc", "-", "85.88 / 86.42", "-",
              ("refcoco",), ("accuracy@0.5",), ("gref", "gref_umd", "refcocog")),
    ResultRow("Visual entailment", "SNLI-VE", "val / test", "Acc", "-", "89.45 / 89.29", "-"),
    ResultRow("NLVR", "NLVR2", "dev / test-P", "Acc", "-", "84.58 / 84.95", "-"),
)  # fmt: skip

# README "Released models" (models-multimodal.md §4.1): name, backbone, text enc / fusion / decoder layers, #params.
README_MODELS = (
    ("mplug.en.base", "ViT-B/16", 6, 6, 12, "350M"),
    ("mplug.en.large", "ViT-L/14", 6, 6, 12, "600M"),
    ("mplug.en.large.v2", "ViT-L/14", 6, 6, 12, "600M"),
    ("mplug.en.huge", "ViT-L/14", 24, 6, 12, "1.1B (never released)"),
)


def read_runs(folders: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every ``metrics.json`` under ``folders`` (the folder itself or any depth below) that names its recipe."""
    runs = []
    for folder in folders:
        root = Path(folder)
        if not root.exists():
            raise CliError(f"--runs {root} does not exist")
        files = [root] if root.is_file() else sorted(root.rglob("metrics.json"))
        for path in files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as err:
                raise CliError(f"cannot read {path}: {err}") from None
            if isinstance(data, dict) and data.get("recipe"):
                runs.append({**data, "path": str(path.parent)})
    return runs


def _our_cell(row: ResultRow, runs: Sequence[dict[str, Any]]) -> str:
    if not row.recipes:
        return "no released code (dataset classes only)"
    cells = []
    for run in runs:
        if run["recipe"] not in row.recipes or (row.datasets and run.get("dataset") not in row.datasets):
            continue
        metrics = run.get("metrics") or {}
        values = [f"{100 * metrics[k]:.2f}" for k in row.keys if isinstance(metrics.get(k), int | float)]
        if values:
            cells.append(f"{' / '.join(values)} ({run.get('eval_file') or 'eval'}; {run['path']})")
    return "; ".join(cells) or "not run"


def results_table(runs: Sequence[dict[str, Any]] = ()) -> str:
    """The README results table with an ``ours`` column (metrics x 100, CIDEr on the x100 scale)."""
    lines = ["## mPLUG results: README beside ours", "",
             "| task | dataset | split | metric | base | large | huge | ours |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in README_RESULTS:
        lines.append(f"| {r.task} | {r.dataset} | {r.split} | {r.metric} | {r.base} | {r.large} | {r.huge} | "
                     f"{_our_cell(r, runs)} |")  # fmt: skip
    known = {name for r in README_RESULTS for name in r.recipes}
    other = [run for run in runs if run["recipe"] not in known]
    if other:
        lines += ["", "Our runs of recipes without a README row:", "", "| recipe | metrics | run |", "|---|---|---|"]
        for run in other:
            shown = {k: round(v, 4) for k, v in (run.get("metrics") or {}).items() if isinstance(v, int | float)}
            lines.append(f"| {run['recipe']} | {json.dumps(shown)} | {run['path']} |")
    return "\n".join(lines) + "\n"


def count_parameters(preset: str) -> int:
    """Parameters of our VQA model (every part: ViT, text encoder, fusion that runs, decoder; no momentum copies,
    no CLIP text tower, no dead fusion layers) at ``preset``, built on the meta device."""
    from alicemind.mplug import MPlugConfig

    config = MPlugConfig.from_preset(preset, distill=False)
    return _count(json.dumps(dataclasses.asdict(config), sort_keys=True, default=str))


@functools.lru_cache(maxsize=8)
def _count(config_json: str) -> int:  # keyed by the architecture: large and large.v2 are built once
    import torch

    from alicemind.mplug import MPlugConfig, MPlugForVQA

    with torch.device("meta"):
        return MPlugForVQA(MPlugConfig(**json.loads(config_json))).num_parameters()


def models_table() -> str:
    """The README's released-models table with our parameter count beside the published one."""
    lines = ["## mPLUG released models: README beside ours", "",
             "| model | visual | text enc | fusion | text dec | #params (README) | #params (ours) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, visual, enc, fusion, dec, params in README_MODELS:
        ours = "-"
        if name != "mplug.en.huge":  # no preset: the huge model was never released
            ours = f"{count_parameters(name) / 1e6:.1f}M"
        lines.append(f"| {name} | {visual} | {enc} | {fusion} | {dec} | {params} | {ours} |")
    lines += ["", "Ours counts the modules a task runs (MPlugForVQA: every part). The release's files also hold CLIP's",
              "text tower, the six dead fusion layers 0..5, fusion embeddings and momentum copies, none of which run."]  # fmt: skip
    return "\n".join(lines) + "\n"


def reproduce(table: str = "all", runs: Iterable[str | Path] = ()) -> str:
    """Markdown of the chosen README table(s) with our figures beside them."""
    if table not in TABLES:
        raise CliError(f"--table must be one of {', '.join(TABLES)}, got {table!r}")
    parts = []
    if table in ("models", "all"):
        parts.append(models_table())
    if table in ("results", "all"):
        parts.append(results_table(read_runs(runs)))
    return "\n".join(parts)
