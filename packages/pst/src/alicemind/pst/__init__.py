"""alicemind-pst: parameter-efficient sparse training (Li et al., IJCAI 2022) for any Linear or Conv1D."""

from alicemind.pst.callbacks import PSTCallback, PSTSchedule
from alicemind.pst.config import PSTConfig, sparsity_schedule
from alicemind.pst.convert import (
    ParameterCount,
    convert_to_pst,
    is_conv1d,
    is_linear_like,
    select_modules,
    set_sparsity,
    sparse_layers,
    trainable_parameters,
)
from alicemind.pst.hf import apply_pst_to_hf_trainer, pst_hf_callback
from alicemind.pst.layer import PST_PARAMETERS, SparseLinear, topk_mask
from alicemind.pst.merge import LayerSparsity, SparsityReport, merge_pst, save_merged
from alicemind.pst.version import __version__

__all__ = [
    "PST_PARAMETERS",
    "LayerSparsity",
    "PSTCallback",
    "PSTConfig",
    "PSTSchedule",
    "ParameterCount",
    "SparseLinear",
    "SparsityReport",
    "__version__",
    "apply_pst_to_hf_trainer",
    "convert_to_pst",
    "is_conv1d",
    "is_linear_like",
    "merge_pst",
    "pst_hf_callback",
    "save_merged",
    "select_modules",
    "set_sparsity",
    "sparse_layers",
    "sparsity_schedule",
    "topk_mask",
    "trainable_parameters",
]
