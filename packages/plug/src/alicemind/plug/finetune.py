"""Fine-tuning PLUG at any parallel layout through core's Trainer: the model is built on the meta device, each
rank reads only its slices (:func:`~alicemind.plug.parallel.parallelize_plug`: tensor parallel over ``tp`` ranks,
FSDP2 over the rest), checkpoints are ``torch.distributed.checkpoint`` folders, and the final model is gathered
into an ordinary model folder. A checkpoint saved at one layout resumes at another (``training.resume=PATH``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.core.cli import CliError
from alicemind.core.training.sharded import ShardedStrategy
from alicemind.plug.parallel import load_sharded_weights, parallelize_plug, unfuse_projections


def parallel_layout(recipe: dict[str, Any]) -> tuple[int, int]:
    """(tp, dp) for this launch: ``parallel.tp`` ranks per model replica, the rest of ``WORLD_SIZE`` data-parallel."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    tp = int((recipe.get("parallel") or {}).get("tp") or 1)
    if tp < 1 or world % tp:
        raise CliError(f"parallel.tp={tp} must be >= 1 and divide the {world} launched rank(s)")
    return tp, world // tp


def use_sharded_engine(recipe: dict[str, Any]) -> bool:
    """``parallel.sharded`` if set, else whenever the launch has several ranks or asks for tensor parallelism."""
    chosen = (recipe.get("parallel") or {}).get("sharded")
    if chosen is not None:
        return bool(chosen)
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or parallel_layout(recipe)[0] > 1


def sharded_strategy(folder: Path, recipe: dict[str, Any], new_modules: tuple[str, ...] = ()) -> ShardedStrategy:
    """The strategy that fills a meta-device PLUG model from ``folder`` at this launch's layout (``new_modules``:
    a task head the checkpoint may lack, initialised instead)."""
    from torch.distributed.tensor.parallel import loss_parallel

    tp, dp = parallel_layout(recipe)
    checkpointing = bool((recipe.get("parallel") or {}).get("activation_checkpointing", False))
    dims = [(name, size) for name, size in (("dp", dp), ("tp", tp)) if size > 1]

    def parallelize(model: nn.Module, mesh) -> nn.Module:
        if mesh is None:  # one process: the whole (unfused) model, read slice by slice all the same
            unfuse_projections(model)
            model.to_empty(device="cpu")
            load_sharded_weights(model, folder, new_modules=new_modules)
            return model
        return parallelize_plug(model, mesh, weights=folder, activation_checkpointing=checkpointing,
                                new_modules=new_modules)  # fmt: skip

    return ShardedStrategy(
        parallelize,
        mesh_shape=tuple(size for _, size in dims),
        mesh_dim_names=tuple(name for name, _ in dims),
        data_dim="dp",
        step_context=loss_parallel if tp > 1 else _no_context,
    )


def _no_context():
    from contextlib import nullcontext

    return nullcontext()


def scalar_loss(outputs):
    """The model output with a plain-tensor loss (a vocabulary-parallel loss is a replicated DTensor)."""
    from torch.distributed.tensor import DTensor

    if isinstance(outputs.loss, DTensor):
        outputs.loss = outputs.loss.full_tensor()
    return outputs


def build_on_meta(
    model_class, folder: Path, overrides: dict[str, Any], dtype: str | None = None, **kwargs
) -> nn.Module:
    """``model_class`` with ``folder``'s config (plus overrides) built on the meta device (no memory yet), its
    parameters in ``dtype`` (``parallel.dtype``; default torch's default dtype) once filled."""
    from alicemind.plug.config import PlugConfig

    config = PlugConfig.from_json_file(folder / "config.json", **overrides)
    with torch.device("meta"):
        model = model_class(config, **kwargs)
    return model.to(getattr(torch, dtype)) if dtype else model


class process_group:
    """The torchrun job's process group for the whole verb (the Trainer would end one it created itself when
    training ends, before the model is gathered and evaluated); ended on exit if created here."""

    def __enter__(self):
        import torch.distributed as dist

        self.created = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
        if self.created:
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return self

    def __exit__(self, *exc) -> None:
        import torch.distributed as dist

        if self.created and dist.is_initialized():
            dist.destroy_process_group()


def finetune_generation(recipe: dict[str, Any]) -> dict[str, Any]:
    """The generation recipe (``source<TAB>target``) on the sharded engine; evaluates on ``data.valid`` too."""
    parallel_layout(recipe)  # a layout that does not fit the launch fails before anything is read
    data, training, folder = recipe["data"], dict(recipe["training"]), Path(recipe["model"])
    with process_group():
        return _finetune_generation(recipe, data, training, folder)


def _finetune_generation(recipe, data, training, folder: Path) -> dict[str, Any]:
    import json

    from torch.utils.data import DataLoader

    from alicemind.core.training import Trainer, TrainingConfig
    from alicemind.palm.data import encode_pairs, read_pairs, seq2seq_collator
    from alicemind.palm.pretraining import run_identity
    from alicemind.palm.runner import evaluate_texts, generate_texts, generation_config
    from alicemind.plug.model import PlugForConditionalGeneration
    from alicemind.plug.parallel import save_gathered
    from alicemind.plug.tokenization import PlugTokenizer

    if not data.get("train"):
        raise CliError("the recipe has no training data: set data.train=PATH (and data.valid=PATH)")
    tokenizer = PlugTokenizer.from_pretrained(recipe.get("tokenizer") or folder)
    model = build_on_meta(PlugForConditionalGeneration, folder, recipe.get("config") or {},
                          (recipe.get("parallel") or {}).get("dtype"))  # fmt: skip
    features = encode_pairs(tokenizer, read_pairs(data["train"], limit=data.get("limit")),
                            max_source_length=data["max_source_length"],
                            max_target_length=data["max_target_length"])  # fmt: skip
    batch = training.get("per_device_batch_size") or 16
    loader = DataLoader(features, batch_size=batch, shuffle=True, collate_fn=seq2seq_collator(model.config.pad_token_id),
                        generator=torch.Generator().manual_seed(training.get("seed", 42)))  # fmt: skip
    smoothing = float(recipe.get("label_smoothing", 0.0))
    identity = {k: v for k, v in recipe.items() if k != "parallel"}  # the layout does not change the result
    trainer = Trainer(model, TrainingConfig.from_dict(training), loader,
                      compute_loss=lambda m, b: scalar_loss(m(**b, label_smoothing=smoothing)),
                      run_identity=run_identity(identity, tokenizer, {"train": data["train"]}),
                      strategy=sharded_strategy(folder, recipe))  # fmt: skip
    state = trainer.train()
    out = Path(training.get("output_dir") or "runs/plug-finetune") / "final"
    save_gathered(trainer.model, out, tokenizer)
    trainer.finalize()
    metrics: dict[str, float] = {}
    if data.get("valid"):
        pairs = read_pairs(data["valid"], limit=data.get("eval_limit"))
        with _gathered_root(trainer.model):
            predictions = generate_texts(trainer.model, tokenizer, [s for s, _ in pairs],
                                         generation_config(trainer.model, recipe.get("generation")),
                                         max_source_length=data["max_source_length"], progress=is_main())  # fmt: skip
        metrics = evaluate_texts(predictions, [t for _, t in pairs], lang=recipe.get("lang", "zh"))
        if is_main():
            (out / "eval_predictions.txt").write_text("\n".join(predictions) + "\n", encoding="utf-8")
            (out / "eval_metrics.json").write_text(json.dumps(metrics, indent=1))
    return {"output_dir": str(out), "train_loss": state.loss, "metrics": metrics, "layout": _layout_name(recipe)}


def _layout_name(recipe: dict[str, Any]) -> dict[str, int]:
    tp, dp = parallel_layout(recipe)
    return {"tp": tp, "dp": dp}


def is_main() -> bool:
    """True on rank 0 (or without a process group)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


class _gathered_root:
    """Every FSDP2 unit of ``model`` held gathered while generating: generation calls the model's parts directly
    (``encode``, the cross-attention's key/value projection, one decoder step), not its ``forward``, so FSDP's
    hooks would not gather them all. Under TP x FSDP each rank then holds its tensor-parallel slice of the whole
    model; resharded on exit."""

    def __init__(self, model: nn.Module) -> None:
        from torch.distributed.fsdp import FSDPModule

        self.units = [m for m in model.modules() if isinstance(m, FSDPModule)]

    def __enter__(self):
        for unit in self.units:
            unit.set_reshard_after_forward(False, recurse=False)
            unit.unshard()
        return self

    def __exit__(self, *exc) -> None:
        for unit in self.units:
            unit.set_reshard_after_forward(True, recurse=False)
            unit.reshard()
