"""Dispatch a recipe to its runner by its ``kind`` (``glue`` or ``nlg``)."""

from __future__ import annotations

from typing import Any

from alicemind.core.cli import CliError


def run_recipe(recipe: dict[str, Any], *, progress_bar: bool = True) -> dict[str, Any]:
    """Run a PST recipe; returns its results (also written to ``output_dir/pst_results.json``)."""
    kind = recipe.get("kind")
    if kind == "glue":
        from alicemind.pst.nlu import run_glue

        return run_glue(recipe, progress_bar=progress_bar)
    if kind == "nlg":
        from alicemind.pst.nlg import run_nlg

        return run_nlg(recipe, progress_bar=progress_bar)
    raise CliError(f"recipe kind must be 'glue' or 'nlg', got {kind!r}")
