"""CLUE classification with PLUG's encoder (sofa ``PlugNLU``: a linear classifier on the raw [CLS] state), on the
sharded engine of :mod:`alicemind.plug.finetune`: any TP x FSDP layout, DCP checkpoints, a gathered final model.

A recipe names a registered task (``task: afqmc``; its files under ``data_dir``) or, with ``task: null``, your
own files (``data.train`` / ``data.valid``, columns found by name or given in ``data.columns``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alicemind.core.cli import CliError
from alicemind.plug.finetune import build_on_meta, is_main, parallel_layout, process_group, sharded_strategy

HEAD = ("classifier",)  # absent from a generation checkpoint: initialised


def task_spec(recipe: dict[str, Any]):
    """The registered CLUE task of ``recipe['task']``, or a ``classify`` task over the recipe's own files."""
    from alicemind.core.data import UnknownTaskError, get_task, own_task

    data = recipe.get("data") or {}
    if recipe.get("task"):
        try:
            return get_task(recipe["task"])
        except UnknownTaskError as err:
            raise CliError(str(err.args[0])) from None
    files = {"train": data.get("train"), "dev": data.get("valid")}
    return own_task("classify", data_dir=recipe.get("data_dir"), files=files, columns=data.get("columns"),
                    labels=data.get("labels"), name="own")  # fmt: skip


def read_split(spec, recipe: dict[str, Any], split: str, limit: int | None = None) -> list:
    """The examples of ``split`` (``train`` / ``dev``), at most ``limit``."""
    from alicemind.core.data import load_task_examples

    if recipe.get("task") and not recipe.get("data_dir"):
        raise CliError(f"task {spec.name} reads its files from a folder: set data_dir=FOLDER")
    examples = load_task_examples(spec, recipe.get("data_dir") or ".", split)
    return examples[:limit] if limit else examples


def encode(tokenizer, spec, examples: list, max_length: int) -> list[dict[str, Any]]:
    """``[CLS] a [SEP] b [SEP]`` features with the class index as ``labels``."""
    pairs = any(e.text_b is not None for e in examples)
    texts_b = [e.text_b or "" for e in examples] if pairs else None
    enc = tokenizer([e.text_a for e in examples], texts_b, truncation=True, max_length=max_length)
    return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
             "labels": spec.label_id(e.label)} for i, e in enumerate(examples)]  # fmt: skip


def predict(model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int = 32) -> list[int]:
    """Class indices for ``features`` (every rank runs the same batches: the model may be sharded)."""
    from alicemind.core.data import DataCollatorWithPadding

    collate = DataCollatorWithPadding(pad_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[int] = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            batch = collate(
                [{k: v for k, v in f.items() if k != "labels"} for f in features[start : start + batch_size]]
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            out += model(**batch).logits.argmax(-1).tolist()
    model.train(was_training)
    return out


def finetune_classification(recipe: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune ``PlugForSequenceClassification`` on the recipe's task; accuracy on its dev split."""
    parallel_layout(recipe)  # a layout that does not fit the launch fails before anything is read
    with process_group():
        return _finetune(recipe)


def _finetune(recipe: dict[str, Any]) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from alicemind.core.data import DataCollatorWithPadding
    from alicemind.core.metrics import accuracy
    from alicemind.core.training import Trainer, TrainingConfig
    from alicemind.core.training.run_manifest import recipe_identity
    from alicemind.plug.model import PlugForSequenceClassification
    from alicemind.plug.parallel import save_gathered
    from alicemind.plug.tokenization import PlugTokenizer

    folder, data, training = Path(recipe["model"]), dict(recipe.get("data") or {}), dict(recipe["training"])
    spec = task_spec(recipe)
    tokenizer = PlugTokenizer.from_pretrained(recipe.get("tokenizer") or folder)
    max_length = int(data.get("max_seq_length") or 128)
    train = encode(tokenizer, spec, read_split(spec, recipe, "train", data.get("limit")), max_length)
    dev_examples = read_split(spec, recipe, "dev", data.get("eval_limit")) if _has_dev(spec, recipe) else []
    dev = encode(tokenizer, spec, dev_examples, max_length) if dev_examples else []
    model = build_on_meta(PlugForSequenceClassification, folder, recipe.get("config") or {},
                          (recipe.get("parallel") or {}).get("dtype"), num_labels=spec.num_labels)  # fmt: skip
    model.config.extra.update(num_labels=spec.num_labels, labels=list(spec.labels), task=spec.name)
    pad = model.config.pad_token_id
    loader = DataLoader(train, batch_size=training.get("per_device_batch_size") or 32, shuffle=True,
                        collate_fn=DataCollatorWithPadding(pad),
                        generator=torch.Generator().manual_seed(training.get("seed", 42)))  # fmt: skip

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"accuracy": accuracy(predict(m, dev, pad), [f["labels"] for f in dev])}

    from alicemind.core.data.tasks import task_file

    # The layout does not change the result: a run may resume at another one.
    identity = recipe_identity(recipe, files={"train": task_file(spec, recipe.get("data_dir") or ".", "train")},
                               vocab=tokenizer.get_vocab(), exclude=("training", "parallel"),
                               distributions=("alicemind-plug",))  # fmt: skip
    trainer = Trainer(model, TrainingConfig.from_dict(training), loader, eval_fn=evaluate if dev else None,
                      run_identity=identity, strategy=sharded_strategy(folder, recipe, new_modules=HEAD))  # fmt: skip
    state = trainer.train()
    out = Path(training.get("output_dir") or f"runs/plug-{spec.name}") / "final"
    save_gathered(trainer.model, out, tokenizer)
    trainer.finalize()
    metrics = {k.removeprefix("eval_"): v for r in state.log_history for k, v in r.items() if k.startswith("eval_")}
    if dev and is_main():
        (out / "eval_metrics.json").write_text(json.dumps(metrics, indent=1))
    tp, dp = parallel_layout(recipe)
    return {"output_dir": str(out), "task": spec.name, "train_loss": state.loss, "metrics": metrics,
            "layout": {"tp": tp, "dp": dp}}  # fmt: skip


def _has_dev(spec, recipe: dict[str, Any]) -> bool:
    from alicemind.core.data.tasks import task_file

    try:
        return task_file(spec, recipe.get("data_dir") or ".", "dev").is_file()
    except (FileNotFoundError, KeyError):
        return False
