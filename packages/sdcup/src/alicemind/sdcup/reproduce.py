"""``reproduce``: fine-tune a checkpoint with the CBANK recipe, score the test file, print it beside the README."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from alicemind.core.cli import CliError
from alicemind.core.cli.recipes import apply_overrides, load_recipe


def run_reproduce(table: str, *, checkpoint: str, data_dir: str, name: str = "sdcup.ch.base",
                  output_dir: str = "runs/reproduce-sdcup", overrides: Sequence[str] = (),
                  progress_bar: bool = True) -> str:  # fmt: skip
    """Run the recipe ``table`` names; writes ``results.json`` and ``results.md``; returns the markdown table."""
    from alicemind.sdcup.training import run_finetune

    spec = load_recipe("sdcup", table)
    published = (spec.get("published") or {}).get(name)
    if published is None:
        raise CliError(f"{table!r} has no published row {name!r}; choose from {sorted(spec.get('published') or {})}")
    recipe = apply_overrides(load_recipe("sdcup", spec["recipe"]), list(overrides), package="sdcup")
    for key, filename in (spec.get("files") or {}).items():
        path = Path(data_dir) / filename
        if not path.is_file():
            raise CliError(f"{path} not found (the {key} of {table!r})")
        recipe[key] = str(path)
    out = Path(output_dir)
    recipe.update(model=checkpoint, output_dir=str(out / "finetune"))
    result = run_finetune(recipe, progress_bar=progress_bar)
    ours = 100 * result.final[spec.get("metric", "lf_acc")]
    columns = ["General", "Easy", "Medium", "Hard"]
    markdown = "\n".join([
        "| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns),
        f"| {name} (published) | " + " | ".join(str(published.get(c, "-")) for c in columns) + " |",
        f"| {name} (ours) | {ours:.1f} | - | - | - |",
    ])  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"published": published, "ours": {"General": ours},
                                                  "metrics": result.final}, indent=1))  # fmt: skip
    (out / "results.md").write_text(markdown + "\n")
    return markdown
