"""What every PST recipe shares: convert, train with core's Trainer and the schedule callback, merge, report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.training import Trainer, TrainingConfig, TrainState
from alicemind.pst.callbacks import PSTCallback
from alicemind.pst.config import PSTConfig
from alicemind.pst.convert import ParameterCount, convert_to_pst, trainable_parameters
from alicemind.pst.merge import merge_pst, save_merged

RESULTS_FILE = "pst_results.json"


def require_transformers() -> Any:
    """The transformers module, or a one-line CLI error saying which extra installs it."""
    try:
        import transformers
    except ModuleNotFoundError:
        raise CliError("this recipe needs transformers: pip install 'alicemind-pst[transformers]'") from None
    transformers.logging.set_verbosity_error()
    return transformers


@dataclass
class PSTRun:
    """A finished training run, before merging."""

    model: nn.Module
    callback: PSTCallback
    state: TrainState
    output_dir: Path
    config: PSTConfig
    count: ParameterCount


def train_with_pst(model: nn.Module, recipe: dict[str, Any], loader: DataLoader, eval_fn, *, progress_bar: bool = True,
                   compute_loss=None) -> PSTRun:  # fmt: skip
    """Convert ``model`` as the recipe says and train it; evaluates once per epoch unless ``training.eval_every``."""
    try:
        cfg = PSTConfig.from_dict(recipe.get("pst"))
        convert_to_pst(model, recipe.get("target_modules"), cfg, exclude_modules=recipe.get("exclude_modules"),
                       trainable_modules=recipe.get("trainable_modules"))  # fmt: skip
        training = {"progress_bar": progress_bar, **dict(recipe.get("training") or {})}
        output_dir = Path(recipe.get("output_dir") or "runs/pst")
        train_cfg = TrainingConfig.from_dict({**training, "output_dir": str(output_dir)})
    except ValueError as err:
        raise CliError(str(err)) from None
    if train_cfg.eval_every is None:  # the original evaluates at the end of every epoch
        train_cfg.eval_every = max(1, len(loader) // train_cfg.gradient_accumulation_steps)
    count = trainable_parameters(model)
    callback = PSTCallback(cfg)
    trainer = Trainer(model, train_cfg, loader, eval_fn=eval_fn, callbacks=[callback], compute_loss=compute_loss)
    state = trainer.train()
    return PSTRun(trainer.model, callback, state, output_dir, cfg, count)


def finish_run(run: PSTRun, info: dict[str, Any], metric: str = "score") -> dict[str, Any]:
    """Merge to plain modules, save under ``output_dir/model``, write ``pst_results.json``; the results.

    Both numbers are reported: the last evaluation, and the best one inside the final window where sparsity has
    reached its target (what the original saved and reported).
    """
    history = run.callback.schedule.history
    losses = [h["loss"] for h in run.state.log_history if "loss" in h]
    report = merge_pst(run.model)
    save_merged(run.model, run.output_dir / "model", report)
    results = {
        **info,
        "pst": run.config.to_dict(),
        "trainable_parameters": run.count.trainable,
        "total_parameters": run.count.total,
        "trainable_fraction": run.count.fraction,
        "steps": run.state.step,
        "merged_sparsity": report.sparsity,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "losses": losses,
        "final": history[-1] if history else None,
        "best_in_final_window": run.callback.schedule.best_in_final_window(metric),
        "evaluations": history,
    }
    (run.output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results
