"""The released PLUG checkpoint -> our sharded safetensors, streaming; and Megatron's tensor-parallel split rules.

The release (reference models-language.md section 4.4) is ``plug_model/`` with ``config.json`` (sofa), ``vocab.txt``
and ``28000/mp_rank_{00..07}_model_states.pt``: DeepSpeed ``torch.save`` dicts whose ``module`` entry is rank r's
slice of ``PalmForPreTraining``'s state dict (sofa key names, palm's ``SOFA_RULES``). The files are read only
through core's sealed unpickler, memory-mapped, one at a time; each slice is written to its place in the output
files (``streaming.PieceWriter``), so resident memory stays near one input shard (``benchmarks/bench_plug_convert.py``).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from alicemind.core.checkpoint import (
    CheckpointError,
    SplitRule,
    load_checkpoint_object,
    load_safetensors,
    merge_model_parallel_shards,
)
from alicemind.core.config import CONFIG_NAME, read_json_file
from alicemind.core.io import atomic_folder, register_saved_files
from alicemind.core.modeling import WEIGHTS_NAME, LoadedCheckpoint
from alicemind.palm.convert import HEAD_KEYS, SOFA_DROPS, SOFA_RULES, map_keys
from alicemind.plug.config import PlugConfig

INDEX_NAME = "model.safetensors.index.json"
SHARD_PATTERN = "model-{index:05d}-of-{total:05d}.safetensors"
register_saved_files("model-*-of-*.safetensors", INDEX_NAME)

_RANK_FILE = re.compile(r"^mp_rank_(\d+)_model_states\.pt$")
# Megatron's partition of each released tensor over the model-parallel ranks (first matching pattern wins):
# a dim to concatenate along (0 column-parallel, -1 row-parallel), (dim, stride) for fused column-parallel weights
# stored per rank as [q_r; k_r; v_r] / [k_r; v_r], None for replicated (row-parallel biases are full size).
PLUG_SPLIT_RULES: dict[str, SplitRule] = {
    r"word_embeddings\.weight$": 0,
    r"^cls\.predictions\.(decoder_weight|bias)$": 0,
    r"attention\.self\.query_key_value\.(weight|bias)$": (0, 3),
    r"attention\.self\.(query|key|value)\.(weight|bias)$": 0,
    r"^decoder\.decoder\.layer\.\d+\.attention\.query_key_value\.(weight|bias)$": (0, 3),
    r"cross_attention\.key_value\.(weight|bias)$": (0, 2),
    r"cross_attention\.query\.(weight|bias)$": 0,
    r"intermediate(\.dense)?\.(weight|bias)$": 0,
    r"attention\.output\.dense\.weight$": -1,
    r"^bert\.encoder\.layer\.\d+\.output\.dense\.weight$": -1,
    r"^decoder\.decoder\.layer\.\d+\.(attention|cross_attention)\.dense\.weight$": -1,
    r"^decoder\.decoder\.layer\.\d+\.output\.weight$": -1,
    r".*": None,
}
_COMPILED_RULES = [(re.compile(p), rule) for p, rule in PLUG_SPLIT_RULES.items()]


def split_rule(key: str) -> SplitRule:
    """How Megatron partitioned the released tensor ``key``."""
    return next(rule for pattern, rule in _COMPILED_RULES if pattern.search(key))


def split_tensor(tensor: torch.Tensor, rule: SplitRule, degree: int) -> list[torch.Tensor]:
    """Rank 0..degree-1's slices of a whole tensor under ``rule`` (the inverse of the merge)."""
    if rule is None:
        return [tensor.clone() for _ in range(degree)]
    dim, stride = (rule, 1) if isinstance(rule, int) else rule
    if tensor.shape[dim] % (stride * degree):
        raise CheckpointError(f"size {tensor.shape[dim]} along dim {dim} does not split into {stride}x{degree} parts")
    blocks = [block.chunk(degree, dim=dim) for block in tensor.chunk(stride, dim=dim)]
    return [torch.cat([b[rank] for b in blocks], dim=dim).clone() for rank in range(degree)]


def split_state_dict(state_dict: Mapping[str, torch.Tensor], degree: int) -> list[dict[str, torch.Tensor]]:
    """A whole released-layout state dict as ``degree`` Megatron rank state dicts."""
    ranks: list[dict[str, torch.Tensor]] = [{} for _ in range(degree)]
    for key, tensor in state_dict.items():
        for rank, part in enumerate(split_tensor(tensor, split_rule(key), degree)):
            ranks[rank][key] = part
    return ranks


def merge_state_dicts(shards: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Megatron rank state dicts (rank order) -> the whole released-layout state dict."""
    return merge_model_parallel_shards(shards, PLUG_SPLIT_RULES)


# -- the release on disk ---------------------------------------------------------------------------------------------
def find_shard_files(src: str | Path) -> list[Path]:
    """The ``mp_rank_XX_model_states.pt`` files of a release folder (``plug_model/`` or its iteration folder).

    ``plug_model/`` holds one iteration folder (the release: ``28000/``) or names it in
    ``latest_checkpointed_iteration.txt``. Ranks must be 0..N-1 with none missing.
    """
    root = Path(src)
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a folder of mp_rank_XX_model_states.pt files")
    folder = root
    if not any(_RANK_FILE.match(p.name) for p in root.iterdir()):
        latest = root / "latest_checkpointed_iteration.txt"
        iterations = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
        if latest.is_file():
            folder = root / latest.read_text().strip()
        elif len(iterations) == 1:
            folder = iterations[0]
        elif iterations:
            raise CheckpointError(f"{root} holds several iterations {sorted(p.name for p in iterations)}: pass one")
        if not folder.is_dir():
            raise CheckpointError(f"{latest} names iteration folder {folder.name}, which does not exist")
    by_rank = {int(m.group(1)): p for p in folder.iterdir() if (m := _RANK_FILE.match(p.name))}
    if not by_rank:
        raise CheckpointError(f"no mp_rank_XX_model_states.pt files in {folder}")
    missing = sorted(set(range(max(by_rank) + 1)) - set(by_rank))
    if missing:
        names = ", ".join(f"mp_rank_{r:02d}_model_states.pt" for r in missing)
        raise CheckpointError(f"{folder} is missing shard file(s) {names}")
    return [by_rank[r] for r in range(len(by_rank))]


def _open_shards(paths: Sequence[Path]) -> list[dict[str, torch.Tensor]]:
    """Every rank's ``module`` (memory-mapped), after checking the files belong to one save of one MP degree."""
    modules, steps = [], {}
    for path in paths:
        obj = load_checkpoint_object(path, mmap=True)
        if not isinstance(obj, Mapping) or not isinstance(obj.get("module"), Mapping):
            raise CheckpointError(f"{path} is not a DeepSpeed model-states file: no 'module' state dict")
        world = obj.get("mp_world_size")
        if world is not None and int(world) != len(paths):
            raise CheckpointError(f"{path} says mp_world_size={world} but the folder holds {len(paths)} shard files")
        for name in ("global_steps", "iteration"):
            if obj.get(name) is not None:
                steps[path] = (name, int(obj[name]))
                break
        bad = [k for k, v in obj["module"].items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: 'module' holds non-tensor entries {bad[:5]}")
        modules.append(dict(obj["module"]))
    if len(set(steps.values())) > 1:
        first = paths[0]
        other = next(p for p in paths if steps.get(p) != steps.get(first))
        raise CheckpointError(
            f"{other} is from {steps.get(other)} but {first} from {steps.get(first)}: shards of different saves"
        )
    for path, module in zip(paths[1:], modules[1:], strict=True):
        if set(module) != set(modules[0]):
            diff = sorted(set(module) ^ set(modules[0]))[:5]
            raise CheckpointError(f"{path} has different keys from {paths[0]} (e.g. {diff})")
    return modules


def _config_for(src: Path, shapes: Mapping[str, torch.Size], overrides: Mapping[str, Any]) -> PlugConfig:
    """The release's sofa ``config.json`` if present (else the 27B preset), checked against the merged shapes."""
    found = next((p / CONFIG_NAME for p in (src, src.parent, src.parent.parent) if (p / CONFIG_NAME).is_file()), None)
    if found is not None:
        config = PlugConfig.from_sofa_dict(read_json_file(found), **overrides)
    else:
        config = PlugConfig.from_preset("plug.27b", **overrides)
    layers = {int(m.group(1)) for k in shapes if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", k))}
    dec_layers = {int(m.group(1)) for k in shapes if (m := re.match(r"decoder\.decoder\.layer\.(\d+)\.", k))}
    vocab, hidden = shapes["bert.embeddings.word_embeddings.weight"]
    seen = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=len(layers), dec_hidden_layers=len(dec_layers))
    wrong = {k: (getattr(config, k), v) for k, v in seen.items() if getattr(config, k) != v}
    if wrong:
        raise CheckpointError(f"config ({found or 'preset plug.27b'}) disagrees with the shards: {wrong}")
    config.attn_separate = any(".attention.self.query." in k for k in shapes)
    return config


def _merged_shapes(modules: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Size]:
    shapes = {}
    for key, first in modules[0].items():
        rule = split_rule(key)
        if rule is None:
            shapes[key] = first.shape
            continue
        dim = rule if isinstance(rule, int) else rule[0]
        size = list(first.shape)
        size[dim] = sum(m[key].shape[dim] for m in modules)
        shapes[key] = torch.Size(size)
    return shapes


def _groups(keys: Sequence[str], shapes: Mapping[str, torch.Size], itemsize: int, limit: int) -> list[list[str]]:
    groups, current, size = [], [], 0
    for key in keys:
        nbytes = shapes[key].numel() * itemsize
        if current and size + nbytes > limit:
            groups.append(current)
            current, size = [], 0
        current.append(key)
        size += nbytes
    return groups + ([current] if current else [])


def _new_names(keys: Sequence[str], source: str) -> dict[str, str]:
    """Released key -> our key (palm's sofa rules)."""
    return {key: next(iter(map_keys({key: torch.empty(0)}, SOFA_RULES, {}, source=source)[0])) for key in keys}


def convert_megatron(
    src: str | Path,
    dst: str | Path,
    *,
    max_shard_bytes: int = 2 << 30,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **config_overrides: Any,
) -> Path:
    """Merge the released ``mp_rank_XX_model_states.pt`` shards into ``dst``: ``config.json``,
    ``model-0000i-of-0000n.safetensors`` of at most ``max_shard_bytes`` each, ``model.safetensors.index.json``
    and ``vocab.txt`` (when the release has one).

    Streaming: the output files are laid out first (every merged shape is known from the shards' headers), then
    the input shards are read one at a time (memory-mapped; only their ``module`` tensors are touched) and each
    slice is written to its place in the output. Resident memory stays near one input shard. Every input check runs
    before anything is written, and ``dst`` appears only complete (assembled beside it and renamed).
    """
    from tqdm.auto import tqdm

    from alicemind.plug.streaming import PieceWriter

    src = Path(src)
    paths = find_shard_files(src)
    modules = _open_shards(paths)
    shapes = _merged_shapes(modules)
    src_dtype = next(iter(modules[0].values())).dtype
    del modules  # unmapped again: the merge below maps one shard at a time
    config = _config_for(paths[0].parent, shapes, config_overrides)
    _, dropped = map_keys(dict.fromkeys(shapes, torch.empty(0)), SOFA_RULES, SOFA_DROPS, source=str(src))
    keys = [k for k in shapes if k not in set(dropped)]
    names = _new_names(keys, str(src))
    out_dtype = dtype or src_dtype
    groups = _groups(keys, shapes, out_dtype.itemsize, max_shard_bytes)
    with atomic_folder(Path(dst), overwrite=overwrite) as staging:
        config.save_pretrained(staging)
        writers, writer_of, weight_map = [], {}, {}
        for index, group in enumerate(groups, start=1):
            name = SHARD_PATTERN.format(index=index, total=len(groups))
            meta = {"format": "pt", "source": f"megatron-mp{len(paths)}"}
            writers.append(PieceWriter(staging / name, {names[k]: shapes[k] for k in group}, out_dtype, meta))
            for key in group:
                writer_of[key], weight_map[names[key]] = writers[-1], name
        for rank, path in enumerate(tqdm(paths, desc="convert", unit="shard", disable=not progress)):
            module = load_checkpoint_object(path, mmap=True)["module"]
            for key in keys:
                _place(writer_of[key], names[key], key, module[key], rank, shapes[key], path)
            del module
            gc.collect()
        for writer in writers:
            writer.close()
        total = sum(shapes[k].numel() for k in keys) * out_dtype.itemsize
        index_json = {"metadata": {"total_size": total, "source_format": f"megatron-mp{len(paths)}"},
                      "weight_map": weight_map}  # fmt: skip
        (staging / INDEX_NAME).write_text(json.dumps(index_json, indent=1, sort_keys=True) + "\n")
        for folder in (paths[0].parent, paths[0].parent.parent):
            if (folder / "vocab.txt").is_file():
                (staging / "vocab.txt").write_bytes((folder / "vocab.txt").read_bytes())
                break
    return Path(dst)


def _place(writer, name: str, key: str, piece: torch.Tensor, rank: int, shape: torch.Size, path: Path) -> None:
    """Write rank ``rank``'s ``piece`` of released tensor ``key`` where Megatron's rule puts it in the whole."""
    rule = split_rule(key)
    if rule is None:
        if rank == 0:
            writer.write(name, piece, 0, 0)
        elif not torch.equal(writer.read(name), piece.to(writer.dtype)):
            raise CheckpointError(f"{path}: {key} is replicated but differs from rank 0's")
        return
    dim, stride = (rule, 1) if isinstance(rule, int) else rule
    block_total = shape[dim] // stride
    for block_index, block in enumerate(piece.chunk(stride, dim=dim)):
        writer.write(name, block, dim, block_index * block_total + rank * block.shape[dim])


# -- reading ---------------------------------------------------------------------------------------------------------
def iter_sharded_tensors(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, tensor) of a sharded folder, one safetensors file in memory at a time."""
    index = json.loads((folder / INDEX_NAME).read_text())
    for name in sorted(set(index["weight_map"].values())):
        yield from load_safetensors(folder / name).items()


def read_checkpoint(path: Path, *, config_class=PlugConfig, **config_overrides: Any) -> LoadedCheckpoint:
    """Our folder (``model.safetensors`` or sharded with an index) or a Megatron release folder (merged in memory:
    for small models; convert the 27B release with :func:`convert_megatron`)."""
    path = Path(path)
    if (path / CONFIG_NAME).is_file() and (path / INDEX_NAME).is_file():
        config = config_class.from_json_file(path / CONFIG_NAME, **config_overrides)
        source = json.loads((path / INDEX_NAME).read_text()).get("metadata", {}).get("source_format", "alicemind")
        state = dict(iter_sharded_tensors(path))
        return LoadedCheckpoint(config, state, f"alicemind-sharded ({source})", ignore_unexpected=HEAD_KEYS)
    if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        config = config_class.from_json_file(path / CONFIG_NAME, **config_overrides)
        return LoadedCheckpoint(config, load_safetensors(path / WEIGHTS_NAME), "alicemind", ignore_unexpected=HEAD_KEYS)
    paths = find_shard_files(path)
    modules = _open_shards(paths)
    merged = merge_state_dicts(modules)
    config = _config_for(paths[0].parent, {k: v.shape for k, v in merged.items()}, config_overrides)
    state, _ = map_keys(merged, SOFA_RULES, SOFA_DROPS, source=str(path))
    return LoadedCheckpoint(config, state, f"megatron-mp{len(paths)}", ignore_unexpected=HEAD_KEYS)
