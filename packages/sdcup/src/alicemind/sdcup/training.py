"""The recipe-driven runs: ``pretrain`` (dependency + MLM under the curriculum) and ``finetune`` (NL2SQL).

Both train with core's Trainer (mixed precision by capability, checkpoints with exact resume, run identity)
and write ``output_dir/model`` (weights + tokenizer) and a results JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.ops.optim import build_optimizer
from alicemind.core.training import Trainer, TrainingConfig, move_to_device, seed_everything
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.sdcup.config import SdcupConfig
from alicemind.sdcup.curriculum import CurriculumBatchSampler, pacing_function
from alicemind.sdcup.data import Nl2SqlDataset, nl2sql_collator, read_examples, read_tables
from alicemind.sdcup.model import SdcupForPreTraining
from alicemind.sdcup.nl2sql import SdcupForNL2SQL
from alicemind.sdcup.pretraining import build_items, easy_to_hard, pretraining_collator
from alicemind.sdcup.tokenization import SdcupTokenizer


@dataclass
class RunResult:
    output_dir: Path
    model_dir: Path
    initial: dict[str, float]
    final: dict[str, float]


def load_tokenizer(source: str | None) -> SdcupTokenizer:
    """From a folder saved by ``save_pretrained``, a folder with ``vocab.txt``, or a ``vocab.txt`` file."""
    if not source:
        raise CliError("give tokenizer=FOLDER or tokenizer=vocab.txt (google_zh_vocab.txt for the released models)")
    path = Path(source)
    if path.is_file():
        return SdcupTokenizer.from_vocab_file(path)
    if (path / "tokenizer_config.json").is_file():
        return SdcupTokenizer.from_pretrained(path)
    if (path / "vocab.txt").is_file():
        return SdcupTokenizer.from_vocab_file(path / "vocab.txt")
    raise CliError(f"no tokenizer at {path} (expected tokenizer files or vocab.txt)")


def _file(recipe: dict[str, Any], key: str) -> Path:
    value = recipe.get(key)
    if not value or not Path(value).is_file():
        raise CliError(f"{key}={value!r} is not a file")
    return Path(value)


def _examples(recipe: dict[str, Any], key: str):
    tables_key = "dev_tables" if key == "dev_file" and recipe.get("dev_tables") else "tables"
    try:
        return read_examples(_file(recipe, key), read_tables(_file(recipe, tables_key)))
    except (ValueError, KeyError) as err:
        raise CliError(f"{key}: {err}") from None


def _model(cls, recipe: dict[str, Any], vocab_size: int):
    overrides = dict(recipe.get("model_config") or {})
    if recipe.get("model"):
        return cls.from_pretrained(recipe["model"], **overrides)
    config = SdcupConfig.from_pretrained(recipe.get("scratch_config") or "sdcup.base",
                                         **{"vocab_size": vocab_size, **overrides})  # fmt: skip
    return cls(config)


def _train_config(recipe: dict[str, Any], progress_bar: bool, output_dir: Path) -> TrainingConfig:
    cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    cfg.output_dir = str(output_dir)
    return cfg


def mean_metrics(model, loader) -> dict[str, float]:
    """Mean of the model's per-batch ``metrics`` over ``loader`` (no gradients, eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    with torch.no_grad():
        for batch in loader:
            for name, value in model(**move_to_device(batch, device)).metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
    return {k: v / max(len(loader), 1) for k, v in sums.items()}


def run_pretraining(recipe: dict[str, Any], *, progress_bar: bool = True, overrides=()) -> RunResult:
    """Schema-dependency prediction + MLM on SQL-annotated pairs, fed easy-to-hard under ``curriculum.pacing``."""
    tokenizer = load_tokenizer(recipe.get("tokenizer"))
    examples = _examples(recipe, "train_file")
    output_dir = Path(recipe.get("output_dir") or "runs/sdcup-pretrain")
    cfg = _train_config(recipe, progress_bar, output_dir)
    seed_everything(cfg.seed)
    data = dict(recipe.get("data") or {})
    model = _model(SdcupForPreTraining, recipe, tokenizer.vocab_size)
    max_len = int(data.get("max_seq_length") or model.config.max_seq_length)
    items = build_items(examples, tokenizer, max_seq_length=max_len,
                        mlm_probability=float(data.get("mlm_probability", 0.15)), seed=cfg.seed)  # fmt: skip
    if cfg.max_steps is None:
        raise CliError("pre-training runs by steps: set training.max_steps")
    cur = dict(recipe.get("curriculum") or {})
    pacing = pacing_function(str(cur.get("pacing", "linear")), start=float(cur.get("start", 0.2)),
                             duration_steps=int(float(cur.get("duration", 0.8)) * cfg.max_steps))  # fmt: skip
    batch = cfg.per_device_batch_size or 16
    sampler = CurriculumBatchSampler(easy_to_hard(items), batch, cfg.max_steps, pacing, seed=cfg.seed)
    loader = DataLoader(range(len(items)), batch_sampler=sampler, collate_fn=pretraining_collator(items))
    cfg.per_device_batch_size = None  # the batch sampler sets the batch size
    # Evaluation: every pair once, unmasked, in file order (the collator looks indices up in ``items``).
    eval_loader = DataLoader(range(len(items)), batch_size=batch, collate_fn=pretraining_collator(items, masked=False))
    initial = mean_metrics(model, eval_loader)
    identity = recipe_identity(recipe, files={"train_file": recipe["train_file"], "tables": recipe["tables"]},
                               vocab=tokenizer.get_vocab(), exclude=("training", "output_dir"),
                               distributions=("alicemind-sdcup",))  # fmt: skip
    identity.overrides = list(overrides)
    trainer = Trainer(model, cfg, loader, eval_fn=lambda m: mean_metrics(m, eval_loader), run_identity=identity)
    trainer.train()
    final = mean_metrics(trainer.model, eval_loader)
    return _finish(trainer, tokenizer, output_dir, initial, final, "pretrain_results.json")


def _finish(trainer, tokenizer, output_dir: Path, initial, final, name: str) -> RunResult:
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        trainer.model.save_pretrained(model_dir, overwrite=True)
        tokenizer.save_pretrained(model_dir)
        (output_dir / name).write_text(json.dumps({"initial": initial, "final": final}, indent=1))
    return RunResult(output_dir, model_dir, initial, final)


def two_rate_optimizer(model: SdcupForNL2SQL, lr_head: float, lr_encoder: float):
    """The original's two Adams (no weight decay) as one AdamW with two groups: head ``lr``, encoder ``lr_bert``."""
    groups = [{"params": list(model.head.parameters()), "lr_scale": 1.0, "weight_decay": 0.0},
              {"params": list(model.sdcup.parameters()), "lr_scale": lr_encoder / lr_head, "weight_decay": 0.0}]  # fmt: skip
    return build_optimizer(groups, name="adamw", lr=lr_head, weight_decay=0.0)


def run_finetune(recipe: dict[str, Any], *, progress_bar: bool = True, overrides=()) -> RunResult:
    """Fine-tune SdcupForNL2SQL (head LR ``training.lr``, encoder LR ``lr_encoder``, both x``lr_decay`` per epoch
    after the first), evaluating logical-form, sql and execution accuracy on ``dev_file``."""
    from alicemind.sdcup.evaluate import read_value_names
    from alicemind.sdcup.predicting import evaluate_model

    tokenizer = load_tokenizer(recipe.get("tokenizer") or recipe.get("model"))
    train, dev = _examples(recipe, "train_file"), _examples(recipe, "dev_file")
    output_dir = Path(recipe.get("output_dir") or "runs/sdcup-finetune")
    cfg = _train_config(recipe, progress_bar, output_dir)
    seed_everything(cfg.seed)
    model = _model(SdcupForNL2SQL, recipe, tokenizer.vocab_size)
    max_len = int(recipe.get("max_seq_length") or model.config.max_seq_length)
    dataset = Nl2SqlDataset(train, tokenizer, max_len)
    batch = cfg.per_device_batch_size or 24
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=nl2sql_collator(dataset),
                        generator=torch.Generator().manual_seed(cfg.seed))  # fmt: skip
    optimizer = two_rate_optimizer(model, cfg.lr, float(recipe.get("lr_encoder", 1e-5)))
    per_epoch, decay = len(loader) // cfg.gradient_accumulation_steps, float(recipe.get("lr_decay", 0.9))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: decay ** (step // max(per_epoch, 1)))
    guided = bool(recipe.get("execution_guided", False))
    synonyms = read_value_names(_file(recipe, "value_names")) if recipe.get("value_names") else None
    evaluate = lambda m: evaluate_model(m, tokenizer, dev, max_len, execution_guided=guided,  # noqa: E731
                                        synonyms=synonyms).metrics()  # fmt: skip
    initial = evaluate(model)
    identity = recipe_identity(recipe, files={k: recipe[k] for k in ("train_file", "dev_file", "tables")},
                               vocab=tokenizer.get_vocab(), exclude=("training", "output_dir"),
                               distributions=("alicemind-sdcup",))  # fmt: skip
    identity.overrides = list(overrides)
    if cfg.metric_for_best is None:
        cfg.metric_for_best, cfg.greater_is_better = "sql_acc", True  # the original selects on sql_acc
    trainer = Trainer(model, cfg, loader, eval_fn=evaluate, optimizer=optimizer, scheduler=scheduler,
                      run_identity=identity)  # fmt: skip
    trainer.train()
    final = evaluate(trainer.model)
    return _finish(trainer, tokenizer, output_dir, initial, final, "finetune_results.json")
