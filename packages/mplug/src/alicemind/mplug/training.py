"""Pre-training and fine-tuning runs on core's Trainer (mixed precision by capability, fused AdamW, safe resume,
progress bar); mPLUG only supplies the data, the model and the release's two learning rates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.io import check_replaceable
from alicemind.core.training import Trainer, TrainingConfig
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.mplug.data import Collator


def two_lr_groups(model: torch.nn.Module, lr: float, vision_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """The release's ``--do_two_optim``: ``vision_lr`` for ``visual_encoder``, ``lr`` for the rest; no decay on
    biases and BERT ``LayerNorm``/norm weights (CLIP's ``ln_*`` are decayed, as released)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        vision = name.startswith("visual_encoder.")
        no_decay = name.endswith(".bias") or (not vision and "norm" in name.split(".")[-2])
        groups.setdefault((vision, no_decay), []).append(p)
    return [
        {"params": ps, "lr": vision_lr if vision else lr, "weight_decay": 0.0 if no_decay else weight_decay}
        for (vision, no_decay), ps in groups.items()
    ]


def train(
    model,
    records: list[dict[str, Any]],
    processor,
    task: str,
    training: dict[str, Any],
    *,
    vision_lr: float | None = None,
    augment: bool = True,
    max_words: int = 30,
    recipe: dict[str, Any] | None = None,
    eval_fn=None,
    scst: dict[str, Any] | None = None,
):
    """Train ``model`` on ``records`` with core's Trainer; returns the trainer (``trainer.state.log_history``).

    ``task="scst"``: self-critical caption training (``MPlugForCaption.scst_loss``) on ``{"image", "references"}``
    records; ``scst`` holds its generation options (``num_beams`` 5, ``max_new_tokens``, ``min_length``)."""
    config = TrainingConfig.from_dict(dict(training))
    collate = Collator(processor, task, train=augment, max_words=max_words)
    compute_loss = None
    if task == "scst":
        options = {"num_beams": 5, **dict(scst or {})}

        def compute_loss(m, batch):  # the rewarded beams are decoded to text for CIDEr-D against the references
            return m.scst_loss(batch["pixel_values"], batch["references"], processor.decode, **options)

    loader = DataLoader(records, batch_size=config.per_device_batch_size or 8, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(config.seed), drop_last=task in ("pretrain", "retrieval"))  # fmt: skip
    optimizer = None
    if vision_lr is not None:
        from alicemind.core.ops import build_optimizer

        groups = two_lr_groups(model, config.lr, vision_lr, config.weight_decay)
        optimizer = build_optimizer(groups, name=config.optimizer, lr=config.lr, betas=config.adam_betas,
                                    eps=config.adam_eps, weight_decay=config.weight_decay)  # fmt: skip
    identity = None
    if recipe is not None:
        identity = recipe_identity(recipe, exclude=("training", "output_dir"), distributions=("alicemind-mplug",))
    model_dir = Path(config.output_dir) / "model" if config.output_dir else None
    if model_dir is not None:  # refused before training, not after: a folder of other files is never deleted
        check_replaceable(model_dir)
    trainer = Trainer(model, config, loader, optimizer=optimizer, eval_fn=eval_fn, run_identity=identity,
                      compute_loss=compute_loss)  # fmt: skip
    trainer.train()
    if model_dir is not None and trainer.dist.is_main:
        # A resumed or repeated run replaces its own model folder (only files a save writes); anything else raises.
        trainer.model.save_pretrained(model_dir)
        processor.tokenizer.save_pretrained(model_dir)
    return trainer
