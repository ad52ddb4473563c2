"""alicemind-cap: ContrastivePruning (Xu et al., AAAI 2022) — CAP-f, CAP-m and CAP-soft for any encoder."""

from alicemind.cap.adapters import (
    AdapterNotFoundError,
    CoreBlockAdapter,
    EncoderAdapter,
    HFBertAdapter,
    LayerHandles,
    RepresentationCapture,
    find_adapter,
)
from alicemind.cap.bank import RepresentationBank, bank_bytes, encode_into_bank
from alicemind.cap.callbacks import CapCallback
from alicemind.cap.config import ORIGINAL_SPARSITY_SEQUENCE, CapConfig, check_sparsity
from alicemind.cap.contrastive import ContrastiveLoss, bank_contrastive_loss, distillation_loss
from alicemind.cap.export import count_parameters, export_pruned, load_pruned
from alicemind.cap.hf import apply_cap_to_hf_trainer
from alicemind.cap.loop import IndexedDataset, prune_model
from alicemind.cap.movement import MaskedLinear, MovementPruner, cubic_threshold
from alicemind.cap.objective import CapObjective
from alicemind.cap.structured import StructuredPruner, pruning_counts, select_heads, select_neurons
from alicemind.cap.version import __version__

__all__ = [
    "ORIGINAL_SPARSITY_SEQUENCE",
    "AdapterNotFoundError",
    "CapCallback",
    "CapConfig",
    "CapObjective",
    "ContrastiveLoss",
    "CoreBlockAdapter",
    "EncoderAdapter",
    "HFBertAdapter",
    "IndexedDataset",
    "LayerHandles",
    "MaskedLinear",
    "MovementPruner",
    "RepresentationBank",
    "RepresentationCapture",
    "StructuredPruner",
    "__version__",
    "apply_cap_to_hf_trainer",
    "bank_bytes",
    "bank_contrastive_loss",
    "check_sparsity",
    "count_parameters",
    "cubic_threshold",
    "distillation_loss",
    "encode_into_bank",
    "export_pruned",
    "find_adapter",
    "load_pruned",
    "prune_model",
    "pruning_counts",
    "select_heads",
    "select_neurons",
]
