"""Sharded training for :class:`~alicemind.core.training.Trainer`: the model parallelized in place over a
``DeviceMesh`` (tensor parallel, FSDP2, or both) instead of wrapped in DDP, and checkpoints written with
``torch.distributed.checkpoint`` (every rank writes its own shards; a checkpoint saved at one layout loads at
another, or in one process).

Pass ``strategy=ShardedStrategy(parallelize, mesh_shape=(2, 2), mesh_dim_names=("dp", "tp"))`` to the Trainer.
Only the mesh dimension named ``data_dim`` splits the data: ranks that differ only in the other dimensions (a
tensor-parallel group) see the same batches.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from alicemind.core.training.distributed import DistInfo

DCP_FOLDER = "dcp"  # the torch.distributed.checkpoint folder inside checkpoint-<step>/

Parallelize = Callable[[nn.Module, "torch.distributed.device_mesh.DeviceMesh | None"], nn.Module]


def _flat_options():
    # Optimizer state and group settings keyed by parameter name, not by group index: the groups differ between
    # layouts (split_param_groups), the names do not.
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(flatten_optimizer_state_dict=True)


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def _single_process_ok():
    # dcp warns that it "assumes a single process" even when told so (no_dist=True): one process is intended.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


@dataclass
class ShardedStrategy:
    """How a Trainer places a model over the ranks and checkpoints it.

    ``parallelize(model, mesh)`` shards ``model`` in place over ``mesh`` (``None`` when ``mesh_shape`` is empty:
    one process) and returns the module to train; it may fill a model built on the meta device. ``step_context``
    is entered around each forward+backward (e.g. ``torch.distributed.tensor.parallel.loss_parallel``).
    """

    parallelize: Parallelize
    mesh_shape: tuple[int, ...] = ()
    mesh_dim_names: tuple[str, ...] = ()
    data_dim: str | None = "dp"
    step_context: Callable[[], AbstractContextManager] = contextlib.nullcontext
    mesh: object = field(init=False, default=None)

    def prepare(self, model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
        """Build the mesh over this job's ranks and parallelize ``model`` on it (every rank calls this)."""
        if self.mesh_shape:
            if math.prod(self.mesh_shape) != info.world_size:
                raise ValueError(
                    f"mesh {dict(zip(self.mesh_dim_names, self.mesh_shape, strict=True))} needs "
                    f"{math.prod(self.mesh_shape)} ranks, the job has {info.world_size}"
                )
            from torch.distributed.device_mesh import init_device_mesh

            self.mesh = init_device_mesh(device.type, tuple(self.mesh_shape), mesh_dim_names=self.mesh_dim_names)
        elif info.world_size > 1:
            raise ValueError(f"the job has {info.world_size} ranks but the strategy has no mesh_shape")
        model = self.parallelize(model, self.mesh)
        if not any(p.is_meta for p in model.parameters()):
            model.to(device)
        return model

    def data_info(self, info: DistInfo) -> DistInfo:
        """This rank's place along the data-parallel dimension (what the data is split by)."""
        names = tuple(self.mesh_dim_names)
        if self.mesh is None or self.data_dim not in names:
            return DistInfo(local_rank=info.local_rank)
        sub = self.mesh[self.data_dim]
        return DistInfo(sub.get_local_rank(), sub.size(), info.local_rank, False)

    def split_param_groups(self, groups: list[dict]) -> list[dict]:
        """Each optimizer group split by where its tensors live (plain, or DTensor on one mesh): a fused or
        foreach optimizer kernel takes one group at a time and refuses plain tensors mixed with DTensors."""
        from torch.distributed.tensor import DTensor

        out = []
        for group in groups:
            buckets: dict[object, list] = {}
            for p in group["params"]:
                key = (id(p.device_mesh), tuple(p.placements)) if isinstance(p, DTensor) else None
                buckets.setdefault(key, []).append(p)
            out += [{**group, "params": params} for params in buckets.values()]
        return out

    def clip_grad_norm(self, parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` (same formula) over a mix of DTensor and plain gradients: each
        sharded norm is reduced over its mesh, so every rank gets the global norm and the same scale."""
        from torch.distributed.tensor import DTensor

        parameters = list(parameters)
        squares = []
        for p in parameters:
            if p.grad is None:
                continue
            norm = torch.linalg.vector_norm(p.grad)
            norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
            squares.append(norm.double().square())
        if not squares:
            return torch.zeros(())
        total = torch.stack(squares).sum().sqrt()
        coef = min(1.0, max_norm / (float(total) + 1e-6))
        for p in parameters:
            if p.grad is not None:
                p.grad.mul_(coef)
        return total

    def save(self, directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Model and optimizer state into ``directory/dcp`` (a collective: every rank writes its shards)."""
        save_sharded(directory / DCP_FOLDER, model, optimizer)

    def check(self, directory: Path) -> None:
        """Raise ``FileNotFoundError`` when ``directory`` holds no complete sharded checkpoint."""
        if not (directory / DCP_FOLDER / ".metadata").is_file():
            raise FileNotFoundError(f"{directory} has no {DCP_FOLDER}/.metadata (not a sharded checkpoint)")

    def load(self, directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Restore :meth:`save`'s shards at this process's layout (a collective)."""
        load_sharded(directory / DCP_FOLDER, model, optimizer)

    def load_scheduler(self, scheduler, saved: dict) -> None:
        """The saved schedule position, with this layout's per-group base rates: groups are split by where
        their tensors live, so their number differs between layouts (the rates of a parameter do not)."""
        per_group = ("base_lrs", "_last_lr")
        scheduler.load_state_dict({k: v for k, v in saved.items() if k not in per_group})

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The whole model's state gathered on rank 0 (on CPU); other ranks get ``{}``. A collective."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if not _distributed():  # one process: nothing is sharded
            return {k: v.detach().cpu() for k, v in model.state_dict().items()}
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options)


def save_sharded(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Model and optimizer state as a ``torch.distributed.checkpoint`` folder at ``path`` (a collective: every
    rank writes its shards). Parameters are saved by name and DTensors by their global value, and the optimizer's
    state and group settings by parameter name, so :func:`load_sharded` restores them at any other layout."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer, options=_flat_options())
    with _single_process_ok():
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(path), no_dist=not _distributed())


def load_sharded(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Restore :func:`save_sharded`'s folder into ``model``/``optimizer`` at this process's layout (a collective);
    an optimizer without state gets it created first (a zero step), then replaced by the saved one."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizer, options=_flat_options())
    state = {"model": model_state, "optim": optim_state}
    with _single_process_ok():
        dcp.load(state, checkpoint_id=str(path), no_dist=not _distributed())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=_flat_options())  # fmt: skip
