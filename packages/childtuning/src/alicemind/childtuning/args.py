"""Command-line options shared by every family's finetune verb, and the paper's per-task settings as data."""

from __future__ import annotations

import argparse

from alicemind.childtuning.callbacks import ChildTuningCallback
from alicemind.childtuning.masking import check_reserve_p, normalize_mode

#: Keep probability per GLUE task and mode, from the authors' answer in alibaba/AliceMind#28 (BERT-large setting).
PAPER_RESERVE_P: dict[str, dict[str, float]] = {
    "cola": {"F": 0.2, "D": 0.2},
    "rte": {"F": 0.3, "D": 0.3},
    "mrpc": {"F": 0.4, "D": 0.1},
    "stsb": {"F": 0.2, "D": 0.2},
}

#: The 10 seeds the paper averaged over (alibaba/AliceMind#24).
PAPER_SEEDS: tuple[int, ...] = (42, 52, 57, 63, 78, 96, 127, 140, 298, 375)


def paper_reserve_p(task: str, mode: str) -> float:
    """The paper's p for ``task`` ('cola', 'rte', 'mrpc', 'stsb' / 'sts-b', any case) and mode 'F' or 'D'."""
    key = task.lower().replace("-", "").replace("_", "")
    if key not in PAPER_RESERVE_P:
        raise KeyError(f"no published ChildTuning p for task {task!r}; known: {sorted(PAPER_RESERVE_P)}")
    return PAPER_RESERVE_P[key][normalize_mode(mode)]


def _mode_arg(value: str) -> str:
    try:
        return normalize_mode(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_child_tuning_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--child-tuning {F,D}`` and ``--reserve-p P`` to a finetune parser."""
    group = parser.add_argument_group("ChildTuning")
    group.add_argument(
        "--child-tuning",
        choices=("F", "D"),
        type=_mode_arg,
        default=None,
        help="ChildTuning mode: F (random gradient mask each step) or D (fixed Fisher mask); off by default",
    )
    group.add_argument(
        "--reserve-p",
        type=float,
        default=None,
        help="fraction of gradient entries kept (p_F / p_D); default the paper's value for the task if known",
    )
    return parser


def child_tuning_from_args(args: argparse.Namespace, task: str | None = None) -> ChildTuningCallback | None:
    """The callback for core's Trainer described by ``args`` (None when ``--child-tuning`` is not given).

    Without ``--reserve-p`` the paper's value for ``task`` is used; an unknown task is then an error.
    """
    mode = getattr(args, "child_tuning", None)
    reserve_p = getattr(args, "reserve_p", None)
    if mode is None:
        if reserve_p is not None:
            raise ValueError("--reserve-p was given without --child-tuning {F,D}")
        return None
    if reserve_p is None:
        if task is None:
            raise ValueError("--child-tuning needs --reserve-p (no task given to look up the paper's value)")
        reserve_p = paper_reserve_p(task, mode)
    return ChildTuningCallback(mode, check_reserve_p(reserve_p))


def child_tuning_from_recipe(recipe: dict, task: str | None = None) -> ChildTuningCallback | None:
    """The same as :func:`child_tuning_from_args` for a YAML recipe's ``child_tuning`` / ``reserve_p`` keys.

    Raises ValueError for an unknown mode, a reserve_p without a mode, or a task with no published p.
    """
    mode = recipe.get("child_tuning")
    namespace = argparse.Namespace(
        child_tuning=normalize_mode(str(mode)) if mode else None, reserve_p=recipe.get("reserve_p")
    )
    try:
        return child_tuning_from_args(namespace, task)
    except KeyError as err:
        raise ValueError(f"{err.args[0]}; set reserve_p=P") from None
    except ValueError as err:  # same rule, named as the recipe keys rather than the flags
        message = str(err).replace("--reserve-p", "reserve_p").replace("--child-tuning {F,D}", "child_tuning=F|D")
        raise ValueError(message.replace("--child-tuning", "child_tuning")) from None
