"""alicemind-childtuning: ChildTuning-F and ChildTuning-D (Xu et al., EMNLP 2021) for any torch model and optimizer."""

from alicemind.childtuning.adamw import ORIGINAL_QUIRKS, ChildTuningAdamW
from alicemind.childtuning.args import (
    PAPER_RESERVE_P,
    PAPER_SEEDS,
    add_child_tuning_args,
    child_tuning_from_args,
    child_tuning_from_recipe,
    paper_reserve_p,
)
from alicemind.childtuning.callbacks import ChildTuningCallback
from alicemind.childtuning.fisher import (
    compute_fisher_mask,
    fisher_information,
    global_percentile_threshold,
    original_param_filter,
    select_top_p,
)
from alicemind.childtuning.hf import apply_child_tuning_to_hf_trainer
from alicemind.childtuning.masking import GradientMasker
from alicemind.childtuning.optimizer import ChildTuningOptimizer
from alicemind.childtuning.version import __version__

__all__ = [
    "ORIGINAL_QUIRKS",
    "PAPER_RESERVE_P",
    "PAPER_SEEDS",
    "ChildTuningAdamW",
    "ChildTuningCallback",
    "ChildTuningOptimizer",
    "GradientMasker",
    "__version__",
    "add_child_tuning_args",
    "apply_child_tuning_to_hf_trainer",
    "child_tuning_from_args",
    "child_tuning_from_recipe",
    "compute_fisher_mask",
    "fisher_information",
    "global_percentile_threshold",
    "original_param_filter",
    "paper_reserve_p",
    "select_top_p",
]
