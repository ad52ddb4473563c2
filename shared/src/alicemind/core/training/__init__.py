"""One training loop for every family: mixed precision, gradient accumulation, clipping, LR schedules,
evaluation with best-model selection, atomic checkpoints with exact resume, JSONL/TensorBoard/tqdm logging,
DDP under torchrun (or a ShardedStrategy: tensor parallel / FSDP2 with DCP checkpoints), and callbacks that
techniques hook into."""

from alicemind.core.training.callbacks import TrainerCallback
from alicemind.core.training.checkpoint import latest_checkpoint, list_checkpoints
from alicemind.core.training.config import TrainingConfig, TrainState
from alicemind.core.training.run_manifest import RunConflictError, RunIdentity
from alicemind.core.training.sharded import ShardedStrategy
from alicemind.core.training.trainer import Trainer, move_to_device, seed_everything, split_outputs

__all__ = [
    "RunConflictError",
    "RunIdentity",
    "ShardedStrategy",
    "TrainState",
    "Trainer",
    "TrainerCallback",
    "TrainingConfig",
    "latest_checkpoint",
    "list_checkpoints",
    "move_to_device",
    "seed_everything",
    "split_outputs",
]
