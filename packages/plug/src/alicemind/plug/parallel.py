"""PLUG on torch.distributed: Megatron-style tensor parallelism as DTensor plans, FSDP2 over data parallelism,
activation checkpointing, and loading sharded safetensors straight into each rank's DTensor shards.

Column-parallel: the q/k/v projections and the FFN input; row-parallel: the attention outputs and the FFN
output; vocabulary-parallel: the word embeddings, and with them the tied output projection and (under
``torch.distributed.tensor.parallel.loss_parallel``) the loss. A fused ``qkv_proj`` sharded along its rows would
give rank 0 all of q and half of k, so :func:`unfuse_projections` first splits fused projections into separate
``q_proj``/``k_proj``/``v_proj`` (same numbers): each rank then holds whole heads, and a DTensor's global value is
the same at every parallel degree, which is what lets a distributed checkpoint saved at one layout load at another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from alicemind.core.layers import MultiHeadAttention
from alicemind.core.modeling import WEIGHTS_NAME
from alicemind.plug.convert import INDEX_NAME

# unfused name -> (fused name, part, parts)
_FUSED_SELF = {"q_proj": ("qkv_proj", 0, 3), "k_proj": ("qkv_proj", 1, 3), "v_proj": ("qkv_proj", 2, 3)}
_FUSED_CROSS = {"k_proj": ("kv_proj", 0, 2), "v_proj": ("kv_proj", 1, 2)}


def _split_linear(fused: nn.Linear, parts: int) -> list[nn.Linear]:
    out = fused.out_features // parts
    pieces = []
    for i in range(parts):
        linear = nn.Linear(
            fused.in_features, out, bias=fused.bias is not None, device=fused.weight.device, dtype=fused.weight.dtype
        )
        with torch.no_grad():
            linear.weight.copy_(fused.weight[i * out : (i + 1) * out])
            if fused.bias is not None:
                linear.bias.copy_(fused.bias[i * out : (i + 1) * out])
        pieces.append(linear)
    return pieces


def unfuse_projections(model: nn.Module) -> nn.Module:
    """Replace every fused ``qkv_proj`` / ``kv_proj`` by separate projections holding the same rows (in place)."""
    for module in model.modules():
        if not isinstance(module, MultiHeadAttention) or not module.fused:
            continue
        if module.cross:
            module.k_proj, module.v_proj = _split_linear(module.kv_proj, 2)
            del module.kv_proj
        else:
            module.q_proj, module.k_proj, module.v_proj = _split_linear(module.qkv_proj, 3)
            del module.qkv_proj
        module.fused = False
        module.unfused_from = "kv_proj" if module.cross else "qkv_proj"  # for fuse_state_dict
    return model


def fused_name(name: str, available: Iterable[str]) -> tuple[str, int, int]:
    """The file key holding our parameter ``name``: itself, or (fused key, part, parts) after unfusing."""
    available = set(available)
    if name in available:
        return name, 0, 1
    module, _, leaf = name.rpartition(".")
    parent, _, proj = module.rpartition(".")
    table = _FUSED_CROSS if parent.endswith("cross_attn") else _FUSED_SELF
    if proj in table:
        fused, part, parts = table[proj]
        candidate = f"{parent}.{fused}.{leaf}"
        if candidate in available:
            return candidate, part, parts
    raise KeyError(name)


def _blocks(model: nn.Module) -> list[nn.Module]:
    stacks = [getattr(model, "encoder", None), getattr(model, "decoder", None)]
    return [layer for stack in stacks if stack is not None for layer in stack.layers]


def _tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    degree = tp_mesh.size()
    c = model.config
    for what, size in (("attention heads", c.num_attention_heads), ("intermediate size", c.intermediate_size),
                       ("vocabulary", c.vocab_size)):  # fmt: skip
        if size % degree:
            raise ValueError(f"tensor-parallel degree {degree} does not divide the {what} ({size})")
    parallelize_module(
        model,
        tp_mesh,
        {"embeddings.word_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate())},
    )
    for block in _blocks(model):
        plan = {"ffn.fc_in": ColwiseParallel(), "ffn.fc_out": RowwiseParallel()}
        attentions = ["self_attn"] + (["cross_attn"] if hasattr(block, "cross_attn") else [])
        for attn in attentions:
            plan.update({f"{attn}.{p}": ColwiseParallel() for p in ("q_proj", "k_proj", "v_proj")})
            plan[f"{attn}.out_proj"] = RowwiseParallel()
            getattr(block, attn).num_heads //= degree  # each rank attends over its own heads
        parallelize_module(block, tp_mesh, plan)


def _submesh(mesh: DeviceMesh, name: str) -> DeviceMesh | None:
    names = mesh.mesh_dim_names or ()
    return mesh[name] if name in names else None


def parallelize_plug(
    model: nn.Module,
    mesh: DeviceMesh,
    *,
    weights: str | Path | None = None,
    tp_dim: str = "tp",
    dp_dim: str = "dp",
    activation_checkpointing: bool = False,
    new_modules: tuple[str, ...] = (),
) -> nn.Module:
    """Tensor-parallel over ``mesh[tp_dim]``, FSDP2 over ``mesh[dp_dim]`` (either may be absent), in place.

    Build ``model`` under ``torch.device("meta")`` and pass ``weights`` (our model folder, sharded or not): each
    rank then allocates and reads only its own slice of every tensor. ``activation_checkpointing`` recomputes
    each block in the backward pass (the original's one layer per chunk). ``new_modules`` (e.g.
    ``("classifier",)``) may be absent from ``weights``: they get BERT's initialisation instead.
    """
    unfuse_projections(model)
    tp_mesh, dp_mesh = _submesh(mesh, tp_dim), _submesh(mesh, dp_dim)
    if tp_mesh is None and dp_mesh is None:
        raise ValueError(f"mesh has dims {mesh.mesh_dim_names}; name them {tp_dim!r} and/or {dp_dim!r}")
    if tp_mesh is not None:
        _tensor_parallel(model, tp_mesh)
    if activation_checkpointing:
        for stack in (model.encoder, getattr(model, "decoder", None)):
            if stack is not None:
                for i, block in enumerate(stack.layers):
                    stack.layers[i] = checkpoint_wrapper(block)
    if weights is not None:
        if any(p.is_meta for p in model.parameters()):
            model.to_empty(device=_mesh_device(mesh))
        load_sharded_weights(model, weights, new_modules=new_modules)
    if dp_mesh is not None:
        for block in _blocks(model):
            fully_shard(block, mesh=dp_mesh)
        fully_shard(model, mesh=dp_mesh)
    return model


def local_box(param: DTensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, global offset) of this rank's shard of ``param``, from public API only (the mesh coordinate and
    the placements): ``Shard(d)`` splits dim ``d`` as ``torch.chunk`` does, ``Replicate`` keeps it whole.

    Weights are loaded before FSDP2 shards a tensor-parallel DTensor again, so these two placements are all
    that occur here; any other is refused rather than guessed.
    """
    shape, offset = list(param.shape), [0] * param.dim()
    coordinate = param.device_mesh.get_coordinate()
    for mesh_dim, placement in enumerate(param.placements):
        if isinstance(placement, Replicate):
            continue
        if type(placement) is not Shard:
            raise ValueError(f"cannot load weights into a DTensor placed {param.placements}")
        d, parts = placement.dim, param.device_mesh.size(mesh_dim)
        chunk = -(-shape[d] // parts)  # ceil, as torch.chunk
        start = min(coordinate[mesh_dim] * chunk, shape[d])
        offset[d] += start
        shape[d] = min(chunk, shape[d] - start)
    if tuple(shape) != tuple(param.to_local().shape):
        raise AssertionError(f"computed shard {shape} but this rank holds {tuple(param.to_local().shape)}")
    return tuple(shape), tuple(offset)


def _mesh_device(mesh: DeviceMesh) -> torch.device:
    if mesh.device_type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(mesh.device_type)


def _weight_files(folder: Path) -> dict[str, Path]:
    if (folder / INDEX_NAME).is_file():
        index = json.loads((folder / INDEX_NAME).read_text())
        return {key: folder / name for key, name in index["weight_map"].items()}
    from safetensors import safe_open

    with safe_open(folder / WEIGHTS_NAME, framework="pt") as f:
        return dict.fromkeys(f.keys(), folder / WEIGHTS_NAME)


def _clean(name: str) -> str:
    return name.replace("_checkpoint_wrapped_module.", "")


def fuse_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`unfuse_projections` on a state dict: the q/k/v rows of every attention that was fused
    are concatenated back under ``qkv_proj``/``kv_proj`` (the saved model's own key names)."""
    state = {_clean(k): v for k, v in state.items()}
    for name, module in model.named_modules():
        fused = getattr(module, "unfused_from", None)
        if fused is None:
            continue
        prefix = _clean(name) + "."
        parts = ("k_proj", "v_proj") if fused == "kv_proj" else ("q_proj", "k_proj", "v_proj")
        for leaf in ("weight", "bias"):
            keys = [f"{prefix}{p}.{leaf}" for p in parts]
            if all(k in state for k in keys):
                state[f"{prefix}{fused}.{leaf}"] = torch.cat([state.pop(k) for k in keys])
    return state


def save_gathered(model: nn.Module, folder: str | Path, tokenizer=None) -> Path:
    """Write a parallelized (or unfused) model as an ordinary model folder (``from_pretrained`` loads it).

    A collective: every rank takes part in gathering, rank 0 alone holds the whole state (on CPU) and writes.
    """
    import torch.distributed as dist

    from alicemind.core.checkpoint import save_safetensors
    from alicemind.core.io import atomic_folder, tokenizer_file_names
    from alicemind.core.training.sharded import ShardedStrategy

    folder = Path(folder)
    state = ShardedStrategy(lambda m, mesh: m).full_state_dict(model)
    if not dist.is_initialized() or dist.get_rank() == 0:
        tensors = {k: v.detach().cpu().contiguous() for k, v in fuse_state_dict(model, state).items()}
        with atomic_folder(folder, keep=tokenizer_file_names()) as staging:
            model.config.save_pretrained(staging)
            metadata = {"format": "pt", "model_class": type(model).__name__.removeprefix("FSDP")}
            save_safetensors(tensors, staging / WEIGHTS_NAME, metadata=metadata)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
    if dist.is_initialized():
        dist.barrier()
    return folder


def load_sharded_weights(model: nn.Module, folder: str | Path, *, new_modules: tuple[str, ...] = ()) -> None:
    """Fill every parameter (plain or DTensor) with its slice of a saved model, reading only that slice.

    Strict: every parameter must be found, and every file key other than the pre-training heads must be used,
    except that the submodules named in ``new_modules`` (a task head) are initialised when the files lack them
    (BERT's init, ``config.initializer_range``), and a decoder is ignored when the model has none.
    """
    from safetensors import safe_open

    from alicemind.core.modeling import init_bert_weights

    folder = Path(folder)
    files = _weight_files(folder)
    used: set[str] = set()
    handles: dict[Path, object] = {}
    tensors = dict(model.named_parameters())
    missing: list[str] = []
    absent: list[str] = []  # parameters of new_modules the files lack
    for name, param in tensors.items():
        clean = _clean(name)
        try:
            key, part, parts = fused_name(clean, files)
        except KeyError:
            (absent if clean.startswith(tuple(f"{m}." for m in new_modules)) else missing).append(clean)
            continue
        used.add(key)
        if files[key] not in handles:
            handles[files[key]] = safe_open(files[key], framework="pt")
        view = handles[files[key]].get_slice(key)
        if isinstance(param, DTensor):
            shape, offset = local_box(param)
            local = param.to_local()
        else:
            shape, offset, local = tuple(param.shape), (0,) * param.dim(), param
        rows = view.get_shape()[0] // parts if param.dim() else 0
        index = tuple(
            slice(o + (part * rows if d == 0 else 0), o + s + (part * rows if d == 0 else 0))
            for d, (o, s) in enumerate(zip(offset, shape, strict=True))
        )
        with torch.no_grad():
            local.copy_(view[index] if index else view[:])
    for name in new_modules:
        if not any(a.startswith(f"{name}.") for a in absent):
            continue
        if any(key.startswith(f"{name}.") for key in used):  # half a head: a broken file, not a new head
            missing += [a for a in absent if a.startswith(f"{name}.")]
        else:
            init_bert_weights(model.get_submodule(name), model.config.initializer_range)
    skip = ("mlm_head.",) + (() if hasattr(model, "decoder") else ("decoder.",))
    unused = sorted(k for k in files if k not in used and not k.startswith(skip))
    if missing or unused:
        raise KeyError(f"{folder}: parameters not in the files {missing[:10]}; file keys not used {unused[:10]}")


def save_distributed(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    """Model and optimizer state as a ``torch.distributed.checkpoint`` folder (every rank writes its shards).

    Parameter names are those of the unfused model at every layout, and DTensors are saved by their global
    value, so :func:`load_distributed` restores them at any other TP/FSDP layout (or in one process). The same
    code writes the finetune verb's checkpoints (core's ``ShardedStrategy``).
    """
    from alicemind.core.training.sharded import save_sharded

    save_sharded(path, model, optimizer)


def load_distributed(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    """Restore :func:`save_distributed`'s folder into ``model``/``optimizer`` at this process's layout."""
    from alicemind.core.training.sharded import load_sharded

    load_sharded(path, model, optimizer)
