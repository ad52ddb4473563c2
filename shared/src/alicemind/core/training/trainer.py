"""The training loop: mixed precision, gradient accumulation, clipping, evaluation, atomic checkpoints, exact
resume, logging and DDP, with the hook points of :mod:`alicemind.core.training.callbacks`."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from alicemind.core.ops import autocast, build_optimizer, build_scheduler, param_groups, resolve_precision
from alicemind.core.training import checkpoint as ckpt
from alicemind.core.training import run_manifest
from alicemind.core.training.callbacks import TrainerCallback
from alicemind.core.training.config import TrainingConfig, TrainState
from alicemind.core.training.data import batches_per_epoch, epoch_batches, shard_for_ranks
from alicemind.core.training.distributed import all_reduce_mean, barrier, pick_device, setup_distributed
from alicemind.core.training.logger import MetricsLogger
from alicemind.core.training.run_manifest import RunIdentity, RunPlan
from alicemind.core.training.sharded import ShardedStrategy

LossFn = Callable[[nn.Module, Any], Any]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) dict/list/tuple/namedtuple batch to ``device``; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple: positional constructor
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def split_outputs(outputs: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
    """The loss and the optional ``metrics`` dict of a model output (a tensor, a mapping or an object)."""
    if isinstance(outputs, torch.Tensor):
        loss, metrics = outputs, None
    elif isinstance(outputs, Mapping):
        loss, metrics = outputs.get("loss"), outputs.get("metrics")
    else:
        loss, metrics = getattr(outputs, "loss", None), getattr(outputs, "metrics", None)
    if loss is None:
        raise ValueError(
            f"the model output ({type(outputs).__name__}) has no loss: return a `.loss` attribute or a 'loss' key "
            "(labels in the batch?), or pass compute_loss= to the Trainer"
        )
    if loss.ndim != 0:
        raise ValueError(f"the training loss must be a scalar tensor, got shape {tuple(loss.shape)}")
    return loss, metrics or {}


class Trainer:
    """Trains ``model`` on ``train_dataloader`` as ``config`` says; :meth:`train` runs it.

    Batches are dicts of tensors moved to the device; by default the loss is ``model(**batch).loss`` (or
    ``["loss"]``), and a ``metrics`` dict of scalars in the output is logged as well. ``compute_loss(model, batch)``
    replaces that call and may return a loss tensor or such an output. ``eval_fn(model) -> dict[str, float]`` runs
    every ``eval_every`` steps and at the end (under ``torch.no_grad`` with the model in eval mode).

    Under torchrun (WORLD_SIZE > 1) the process group is created (NCCL on CUDA, gloo on CPU), the model is wrapped
    in DDP (``self.wrapped_model``; ``self.model`` stays the bare module that callbacks and ``eval_fn`` see), the data
    is sharded by rank, logged losses are averaged over ranks, and only rank 0 writes files.

    ``strategy`` (a :class:`~alicemind.core.training.sharded.ShardedStrategy`) replaces DDP: the model is
    parallelized in place over a device mesh (tensor parallel, FSDP2), only the mesh's data dimension splits the
    data, and every rank writes its shards of each checkpoint with ``torch.distributed.checkpoint``.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainingConfig,
        train_dataloader: DataLoader,
        *,
        eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
        callbacks: Iterable[TrainerCallback] = (),
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        compute_loss: LossFn | None = None,
        run_identity: RunIdentity | None = None,
        strategy: ShardedStrategy | None = None,
    ) -> None:
        self.config = config
        self.device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = setup_distributed(self.device)
        seed_everything(config.seed)
        self.strategy = strategy
        if strategy is not None:  # parallelized in place: the bare module is the one the loop calls
            self.model = strategy.prepare(model, self.device, self.dist)
            self.wrapped_model: nn.Module = self.model
        else:
            self.model = model.to(self.device)
            self.wrapped_model = self.model
            if self.dist.world_size > 1:
                device_ids = [self.device] if self.device.type == "cuda" else None
                self.wrapped_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self._step_model = self.wrapped_model  # what a training step calls: compiled, with compile set
        if config.compile:
            backend = config.compile if isinstance(config.compile, str) else "inductor"
            self._step_model = torch.compile(self.wrapped_model, backend=backend)
        data_ranks = strategy.data_info(self.dist) if strategy is not None else self.dist
        self.train_dataloader = shard_for_ranks(train_dataloader, data_ranks, config.seed)
        self._data_world_size = data_ranks.world_size  # what the data order depends on
        self._check_batch_size()
        self.eval_fn = eval_fn
        self.callbacks = list(callbacks)
        self.compute_loss = compute_loss
        self.autocast_dtype = resolve_precision(config.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None
        self.max_steps = self._resolve_max_steps()
        if scheduler is not None and optimizer is None:
            raise ValueError("a scheduler was given without its optimizer: pass optimizer= as well")
        if optimizer is None:
            groups = param_groups(self.model, config.weight_decay, layerwise_lr_decay=config.layerwise_lr_decay)
            if strategy is not None:
                groups = strategy.split_param_groups(groups)
            optimizer = build_optimizer(
                groups,
                name=config.optimizer,
                lr=config.lr,
                betas=config.adam_betas,
                eps=config.adam_eps,
                weight_decay=config.weight_decay,
            )
        self.optimizer = optimizer
        if scheduler is None:
            scheduler = build_scheduler(
                optimizer,
                config.scheduler,
                num_training_steps=self.max_steps,
                warmup_steps=config.warmup_steps,
                warmup_ratio=config.warmup_ratio,
            )
        self.scheduler = scheduler
        self.output_dir = Path(config.output_dir) if config.output_dir else None
        self.state = TrainState(
            max_steps=self.max_steps,
            world_size=self._data_world_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
        )
        self.identity = self._identity(run_identity)
        self._logger: MetricsLogger | None = None

    # ----------------------------------------------------------------------------------------------- set-up
    def _check_batch_size(self) -> None:
        expected, actual = self.config.per_device_batch_size, self.train_dataloader.batch_size
        if expected is not None and actual is not None and expected != actual:
            raise ValueError(
                f"config.per_device_batch_size={expected} but the train dataloader has batch_size={actual}"
            )

    def _resolve_max_steps(self) -> int:
        if self.config.max_steps is not None:
            return self.config.max_steps
        per_epoch = batches_per_epoch(self.train_dataloader)
        if per_epoch is None:
            raise ValueError("num_epochs needs a train dataloader with a length; set max_steps instead")
        steps = self.config.num_epochs * per_epoch // self.config.gradient_accumulation_steps
        if steps == 0:
            raise ValueError(
                f"{self.config.num_epochs} epoch(s) of {per_epoch} batches make no optimizer step with "
                f"gradient_accumulation_steps={self.config.gradient_accumulation_steps}"
            )
        return steps

    def _identity(self, given: RunIdentity | None) -> RunIdentity:
        base = given or RunIdentity(
            {
                "model.class": type(self.model).__name__,
                "model.parameters": sum(p.numel() for p in self.model.parameters()),
                "data.num_batches": batches_per_epoch(self.train_dataloader),
            }
        )
        return base.updated(values={"training": self.config.result_values()}, code=run_manifest.code_versions())

    def _say(self, message: str) -> None:
        # One line on stderr from rank 0; tqdm.write keeps the progress bar intact.
        if self.dist.is_main:
            tqdm.write(f"alicemind: {message}", file=sys.stderr)

    def _prepare_output_dir(self) -> RunPlan | None:
        """Check that ``output_dir`` holds nothing or this same run; clear it on overwrite; record the run."""
        if self.output_dir is None:
            return None
        cfg = self.config
        plan = run_manifest.plan_run(self.output_dir, self.identity, resume=cfg.resume, overwrite=cfg.overwrite)
        barrier(self.dist)  # every rank decided before rank 0 changes anything
        if self.dist.is_main:
            if plan.action == "overwrite":
                deleted = run_manifest.clear_run(self.output_dir)
                self._say(f"--overwrite: starting a new run in {self.output_dir}; deleted {', '.join(deleted)}")
            ckpt.remove_stale(self.output_dir)
            history = list((plan.recorded or {}).get("history", []))
            if plan.action == "resume" and plan.differences:
                history.append({"step": None, "differences": plan.differences})
            run_manifest.write_run(self.output_dir, self.identity, max_steps=self.max_steps, history=history)
        barrier(self.dist)
        return plan

    def _candidates(self, plan: RunPlan | None) -> list[Path]:
        """Checkpoints to try, newest first."""
        resume = self.config.resume
        if resume not in (None, "never", "auto", "force"):
            path = Path(resume)
            if (path / ckpt.STATE_FILE).is_file():
                return [path]
            found = [p for _, p in reversed(ckpt.list_checkpoints(path))]
            if not found:
                raise FileNotFoundError(f"resume={resume!r}: no complete checkpoint there (no {ckpt.STATE_FILE})")
            return found
        if plan is None or plan.action != "resume":
            return []
        return [p for _, p in reversed(ckpt.list_checkpoints(self.output_dir))]

    def _read_intact(self, candidates: list[Path]) -> ckpt.LoadedCheckpoint | None:
        for path in candidates:
            try:
                if self.strategy is not None:
                    self.strategy.check(path)
                    return ckpt.read_checkpoint(path, self.dist.rank, weights=False)
                return ckpt.read_checkpoint(path, self.dist.rank)
            except ckpt.UNREADABLE as err:
                if self.config.resume not in ("auto", "force"):  # an explicit checkpoint: no silent fallback
                    raise ckpt.CorruptCheckpointError(f"cannot resume from {path}: {err}") from err
                barrier(self.dist)
                if self.dist.is_main:
                    aside = ckpt.set_aside(path)
                    self._say(f"warning: {path.name} is unreadable ({err}); moved it to {aside.name}, trying older")
                barrier(self.dist)
        return None

    def _resume(self, plan: RunPlan | None) -> dict[str, torch.Tensor] | None:
        """Restore everything but the RNG, which is returned to be applied once the data iterator exists."""
        candidates = self._candidates(plan)
        loaded = self._read_intact(candidates)
        if loaded is None:
            if candidates:
                self._say(f"no intact checkpoint of this run in {self.output_dir}: training from step 0")
            elif plan is not None and plan.action == "resume":
                self._say(f"no checkpoint of this run in {self.output_dir} yet: training it from step 0")
            return None
        path = loaded.path
        if self.strategy is not None:
            self.strategy.load(path, self.model, self.optimizer)
        else:
            self.model.load_state_dict(loaded.model, strict=True)
            self.optimizer.load_state_dict(loaded.optimizer)
        if loaded.scheduler is not None and self.strategy is not None:
            self.strategy.load_scheduler(self.scheduler, loaded.scheduler)
        elif loaded.scheduler is not None:
            self.scheduler.load_state_dict(loaded.scheduler)
        if self.scaler is not None and loaded.scaler is not None:
            self.scaler.load_state_dict(loaded.scaler)
        saved = loaded.state
        if (saved.world_size, saved.gradient_accumulation_steps) != (
            self._data_world_size,
            self.config.gradient_accumulation_steps,
        ):
            warnings.warn(
                f"resuming {path} (world_size={saved.world_size}, accumulation={saved.gradient_accumulation_steps}) "
                f"with world_size={self._data_world_size}, accumulation={self.config.gradient_accumulation_steps}: "
                "the data order after resume differs from an uninterrupted run",
                stacklevel=3,
            )
        saved.max_steps, saved.world_size = self.max_steps, self._data_world_size
        saved.gradient_accumulation_steps = self.config.gradient_accumulation_steps
        self.state = saved
        where = path.name if path.parent == self.output_dir else str(path)
        differs = plan.differences if plan is not None and plan.action == "resume" else []
        note = f" despite: {'; '.join(differs)}" if differs else ""
        self._say(f"resuming run from {where} (step {saved.step} of {self.max_steps}){note}")
        if loaded.rng is None:
            warnings.warn(f"{path} has no RNG state for rank {self.dist.rank}; continuing with fresh RNG", stacklevel=3)
        return loaded.rng

    # ----------------------------------------------------------------------------------------------- the loop
    def train(self) -> TrainState:
        """Run (or continue) training to ``max_steps`` and return the final state."""
        plan = self._prepare_output_dir()
        rng = self._resume(plan)
        self._logger = MetricsLogger(
            self.output_dir,
            enabled=self.dist.is_main,
            total_steps=self.max_steps,
            start_step=self.state.step,
            progress_bar=self.config.progress_bar,
            tensorboard=self.config.tensorboard,
        )
        self._reset_window()
        for cb in self.callbacks:
            cb.on_train_begin(self)
        self.wrapped_model.train()
        accumulation = self.config.gradient_accumulation_steps
        micro = 0
        try:
            while self.state.step < self.max_steps:
                batches = epoch_batches(
                    self.train_dataloader, self.state.epoch, self.config.seed, self.state.batches_in_epoch
                )
                if rng is not None:  # after the iterator exists: creating it draws from the global RNG
                    ckpt.set_rng_state(rng)
                    rng = None
                seen = False
                for batch in batches:
                    seen = True
                    self.state.batches_in_epoch += 1
                    micro += 1
                    self._forward_backward(batch, sync=micro == accumulation)
                    if micro < accumulation:
                        continue
                    micro = 0
                    self._optimizer_step()
                    if self.state.step >= self.max_steps:
                        break
                else:
                    if not seen and self.state.batches_in_epoch == 0:
                        raise RuntimeError("the train dataloader yielded no batches")
                    self.state.epoch += 1
                    self.state.batches_in_epoch = 0
            for cb in self.callbacks:
                cb.on_train_end(self)
        finally:
            self._logger.close()
        if self.dist.owns_group:
            barrier(self.dist)
            torch.distributed.destroy_process_group()
        return self.state

    def _reset_window(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._metric_sums: dict[str, torch.Tensor] = {}
        self._micro_count = 0

    def _forward_backward(self, batch: Any, *, sync: bool) -> None:
        batch = move_to_device(batch, self.device)
        if self.compute_loss is None and not isinstance(batch, Mapping):
            raise TypeError(f"batches must be dicts of tensors for model(**batch), got {type(batch).__name__}")
        no_sync = not sync and isinstance(self.wrapped_model, DistributedDataParallel)
        # Non-final micro-batches skip DDP's gradient all-reduce; the final one syncs the accumulated sum.
        step_context = self.strategy.step_context() if self.strategy is not None else contextlib.nullcontext()
        with self.wrapped_model.no_sync() if no_sync else contextlib.nullcontext(), step_context:
            with autocast(self.device, self.autocast_dtype):
                if self.compute_loss is not None:
                    outputs = self.compute_loss(self._step_model, batch)
                else:
                    outputs = self._step_model(**batch)
                loss, metrics = split_outputs(outputs)
                for cb in self.callbacks:
                    extra = cb.extra_loss(self, batch, outputs)
                    if extra is not None:
                        loss = loss + extra
            scaled = loss / self.config.gradient_accumulation_steps
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            scaled.backward()
        for cb in self.callbacks:
            cb.after_backward(self)
        # Kept on device: the host syncs only when a log line is written.
        self._loss_sum += loss.detach().float()
        for key, value in metrics.items():
            value = torch.as_tensor(value, device=self.device).detach().float()
            self._metric_sums[key] = self._metric_sums.get(key, 0.0) + value
        self._micro_count += 1

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if self.config.max_grad_norm and self.strategy is not None:
            grad_norm = self.strategy.clip_grad_norm(self.model.parameters(), self.config.max_grad_norm)
        elif self.config.max_grad_norm:
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        for cb in self.callbacks:
            cb.before_optimizer_step(self)
        # The largest group LR is the schedule's value (lower layers may run at a decayed fraction of it).
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        for cb in self.callbacks:
            cb.on_step_end(self)
        self._logger.advance()
        step, cfg = self.state.step, self.config
        last = step >= self.max_steps
        if last or (cfg.log_every and step % cfg.log_every == 0):
            self._log(lr, grad_norm)
        if self.eval_fn is not None and (last or (cfg.eval_every and step % cfg.eval_every == 0)):
            self.evaluate()
        if (
            self.output_dir is not None
            and cfg.save_every != 0
            and (last or (cfg.save_every and step % cfg.save_every == 0))
        ):
            self.save_checkpoint()

    # ----------------------------------------------------------------------------------------------- side paths
    def _log(self, lr: float, grad_norm: torch.Tensor | None) -> None:
        keys = sorted(self._metric_sums)
        window = torch.stack([self._loss_sum, *(self._metric_sums[k] for k in keys)]) / max(1, self._micro_count)
        values = all_reduce_mean(window, self.dist).tolist()
        record: dict[str, float] = {"loss": values[0], "lr": lr, "epoch": self.state.epoch}
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        record.update(zip(keys, values[1:]))
        self.state.loss = values[0]
        self.state.log_history.append({"step": self.state.step, **record})
        self._logger.log(self.state.step, record)
        self._reset_window()

    def evaluate(self) -> dict[str, float]:
        """Run ``eval_fn``, log its metrics, call ``on_evaluate`` and keep the best model in ``output_dir/best``."""
        if self.eval_fn is None:
            raise RuntimeError("Trainer.evaluate needs an eval_fn")
        self.model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.eval_fn(self.model).items()}
        self.wrapped_model.train()
        step = self.state.step
        self.state.log_history.append({"step": step, **{f"eval_{k}": v for k, v in metrics.items()}})
        self._logger.log(step, metrics, prefix="eval")
        for cb in self.callbacks:
            cb.on_evaluate(self, metrics)
        name = self.config.metric_for_best
        if name is not None:
            if name not in metrics:
                raise KeyError(f"metric_for_best={name!r} is not among the eval metrics {sorted(metrics)}")
            value, best = metrics[name], self.state.best_metric
            if best is None or (value > best if self.config.greater_is_better else value < best):
                self.state.best_metric, self.state.best_step = value, step
                self._save_best()
        return metrics

    def _save_best(self) -> None:
        if self.output_dir is None:
            return
        gathered = self.strategy.full_state_dict(self.model) if self.strategy is not None else None  # collective
        if not self.dist.is_main:
            return
        final = self.output_dir / "best"
        tmp = ckpt.begin(final)
        if gathered is not None:
            from alicemind.core.checkpoint import save_safetensors

            save_safetensors(gathered, tmp / ckpt.MODEL_FILE)
        else:
            ckpt.save_model_weights(self.model, tmp / ckpt.MODEL_FILE)
        self.state.save(tmp / ckpt.STATE_FILE)
        ckpt.commit(tmp, final)

    def save_checkpoint(self) -> Path:
        """Write ``output_dir/checkpoint-<step>`` atomically (every rank adds its RNG state) and prune old ones."""
        if self.output_dir is None:
            raise RuntimeError("save_checkpoint needs config.output_dir")
        final = ckpt.checkpoint_dir(self.output_dir, self.state.step)
        tmp = ckpt.temp_dir(final)
        if self.dist.is_main:
            ckpt.begin(final)
        barrier(self.dist)
        try:
            ckpt.write_rng(tmp, self.dist.rank)
            sharded = self.strategy is not None
            if sharded:  # every rank writes its shards of the model and optimizer
                self.strategy.save(tmp, self.model, self.optimizer)
            barrier(self.dist)
            if self.dist.is_main:
                ckpt.write_main(tmp, self.model, self.optimizer, self.scheduler, self.scaler, self.state,
                                weights=not sharded)  # fmt: skip
                ckpt.commit(tmp, final)
                ckpt.prune(self.output_dir, self.config.keep_last_n)
                self._say(f"wrote {final.name} ({ckpt.format_size(ckpt.directory_size(final))})")
        except BaseException:
            if self.dist.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        barrier(self.dist)
        return final

    def finalize(self) -> Path | None:
        """Call once the model folder is written: with ``keep_final_checkpoint=False`` the last checkpoint (its
        optimizer state is the bulk of it) is deleted; returns the checkpoint kept, if any."""
        if self.output_dir is None:
            return None
        final = ckpt.checkpoint_dir(self.output_dir, self.state.step)
        if not final.is_dir():
            return None
        if self.config.keep_final_checkpoint:
            return final
        barrier(self.dist)
        if self.dist.is_main:
            size = ckpt.format_size(ckpt.directory_size(final))
            ckpt.remove_checkpoint(final)
            self._say(f"keep_final_checkpoint=false: deleted {final.name} ({size}); the model folder holds the weights")
        barrier(self.dist)
        return None
