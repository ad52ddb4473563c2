"""``alicemind veco pretrain`` and ``reproduce`` as plain functions over recipe dicts (``recipes/*.yaml``)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.training import Trainer, TrainingConfig
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.veco.config import VecoConfig
from alicemind.veco.pretraining import (
    LOSS_TERMS,
    CaMlmCollator,
    PretrainingDataConfig,
    VecoForPreTraining,
    encode_pair_instances,
    pairs_from_documents,
)


def pretraining_pairs(recipe: dict[str, Any]) -> list[tuple[str, str]]:
    """CA-MLM pairs: bilingual ``pairs`` (TSV source<TAB>target) and adjacent sentences of the ``corpus``
    (one sentence per line, a blank line between documents)."""
    from alicemind.core.data import read_documents
    from alicemind.veco.data import read_task_rows

    pairs: list[tuple[str, str]] = []
    if recipe.get("pairs"):
        pairs += read_task_rows("translation", Path(recipe["pairs"]))
    if recipe.get("corpus"):
        pairs += pairs_from_documents(read_documents(recipe["corpus"]))
    if not pairs:
        raise FileNotFoundError("the recipe has no data: set pairs=FILE.tsv (bilingual) and/or corpus=FILE.txt")
    return pairs


def _collator(tokenizer, config: VecoConfig, data: PretrainingDataConfig, seed: int) -> CaMlmCollator:
    return CaMlmCollator(pad_token_id=config.pad_token_id, mask_token_id=tokenizer.mask_token_id,
                         vocab_size=config.vocab_size, special_ids=tokenizer.all_special_ids, config=data,
                         seed=seed)  # fmt: skip


@torch.no_grad()
def pretraining_losses(model, tokenizer, features, data: PretrainingDataConfig, *, seed: int = 0,
                       batch_size: int = 32) -> dict[str, float]:  # fmt: skip
    """Mean of each of the four loss terms over ``features``, masked with a fixed seed (comparable across calls)."""
    model.eval()
    collate = _collator(tokenizer, model.config, data, seed)
    device = next(model.parameters()).device
    totals = dict.fromkeys(LOSS_TERMS, 0.0)
    batches = 0
    for start in range(0, len(features), batch_size):
        batch = {k: v.to(device) for k, v in collate(features[start : start + batch_size]).items()}
        metrics = model(**batch).metrics
        for term in LOSS_TERMS:
            totals[term] += float(metrics[term])
        batches += 1
    model.train()
    return {k: v / max(batches, 1) for k, v in totals.items()}


def pretrain(recipe: dict[str, Any]) -> dict[str, Any]:
    """MLM + CA-MLM pre-training; saves ``VecoForPreTraining`` (loadable as ``VecoModel`` with the cross-attention
    unplugged, or into the NLG model by :func:`~alicemind.veco.pretraining.init_nlg_from_pretraining`)."""
    from alicemind.veco.finetuning import load_tokenizer, resolve_checkpoint

    tokenizer = load_tokenizer(Path("."), recipe["tokenizer"])
    if tokenizer.mask_token_id is None:
        raise ValueError("pre-training needs a <mask> token: use the tokenizer without a dict.txt (XLM-R ids)")
    spec = recipe["model"]
    if spec.get("init"):
        model = VecoForPreTraining.from_pretrained(resolve_checkpoint(spec["init"]))
    else:
        config = VecoConfig.from_preset(spec["preset"], **{"vocab_size": len(tokenizer), **(spec.get("config") or {})})
        model = VecoForPreTraining(config)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"the model has {model.config.vocab_size} embedding rows but the tokenizer {len(tokenizer)} ids"
        )
    data = PretrainingDataConfig(**(recipe.get("data") or {}))
    pairs = pretraining_pairs(recipe)
    features = encode_pair_instances(tokenizer, pairs, data.max_length)
    training = dict(recipe["training"])
    seed = training.get("seed", 42)
    loader = DataLoader(features, batch_size=training.get("per_device_batch_size") or 32, shuffle=True,
                        collate_fn=_collator(tokenizer, model.config, data, seed),
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    files = {k: recipe[k] for k in ("pairs", "corpus") if recipe.get(k)}
    identity = recipe_identity(recipe, files=files, vocab=tokenizer.get_vocab(), distributions=("alicemind-veco",))
    trainer = Trainer(model, TrainingConfig.from_dict(training), loader, run_identity=identity)
    state = trainer.train()
    out = Path(training.get("output_dir") or "runs/veco-pretrain") / "final"
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    trainer.finalize()
    return {"output_dir": str(out), "instances": len(features), "history": state.log_history}


def task_overrides(recipe: dict[str, Any], task: dict[str, Any]) -> list[str]:
    """The reproduce recipe's ``overrides`` (every task) followed by the task's own ``overrides``."""
    return list(recipe.get("overrides") or []) + list(task.get("overrides") or [])


def reproduce(recipe: dict[str, Any], *, only: Sequence[str] = (), progress: bool = True) -> list[dict[str, Any]]:
    """Fine-tune and evaluate every task of a paper table; rows of ours beside the paper's."""
    from alicemind.core.cli import apply_overrides, load_recipe
    from alicemind.veco.finetuning import finetune

    rows = []
    for name, task in recipe["tasks"].items():
        if only and name not in only:
            continue
        task_recipe = apply_overrides(load_recipe("veco", task["recipe"]), task_overrides(recipe, task), package="veco")
        task_recipe = copy.deepcopy(task_recipe)
        if recipe.get("model"):
            task_recipe["model"] = recipe["model"]
        if recipe.get("data_dir"):
            task_recipe["data_dir"] = str(Path(recipe["data_dir"]) / task.get("data_subdir", name))
        if task_recipe.get("training"):  # one folder per task: tasks sharing an output_dir would be taken for one run
            base = task_recipe["training"].get("output_dir") or "runs/veco-reproduce"
            task_recipe["training"] = {**task_recipe["training"], "output_dir": str(Path(base) / name)}
        result = finetune(task_recipe, progress=progress)
        ours = result["results"].get("avg", next(iter(result["results"].values())))
        for metric, value in (task.get("published") or {}).items():
            rows.append({"task": name, "metric": metric, "ours": ours.get(metric), "published": value})
    return rows


def format_reproduce_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`reproduce` rows (percent)."""
    lines = ["| task | metric | ours | paper |", "|---|---|---|---|"]
    for r in rows:
        ours = "-" if r["ours"] is None else f"{100 * r['ours']:.1f}"
        lines.append(f"| {r['task']} | {r['metric']} | {ours} | {100 * r['published']:.1f} |")
    return "\n".join(lines)


def nlu_class_for(folder: Path):
    """The NLU class whose heads a checkpoint folder holds (the encoder alone when it holds none)."""
    from alicemind.core.checkpoint import load_state_dict_file
    from alicemind.veco import model as nlu
    from alicemind.veco.convert import _nlu_weights

    keys = set(load_state_dict_file(_nlu_weights(folder)))
    if "classifier.out_proj.weight" in keys:
        return nlu.VecoForSequenceClassification
    if "qa_outputs.weight" in keys:
        return nlu.VecoForQuestionAnswering
    if "lm_head.dense.weight" in keys:
        return VecoForPreTraining
    if "classifier.weight" in keys:
        rows = load_state_dict_file(_nlu_weights(folder))["classifier.weight"].shape[0]
        return nlu.VecoForMultipleChoice if rows == 1 else nlu.VecoForTokenClassification
    return nlu.VecoModel


def convert_checkpoint(src: str | Path, dst: str | Path, *, overwrite: bool = False, **options: Any):
    """Any VECO release (NLU folder or fairseq NLG folder) -> our folder with its tokenizer files; returns the model.
    ``options`` (``keep_decoder_layers``, ``resized_dict_map``, ``dictionary``) apply to the fairseq layout."""
    from alicemind.veco.convert import find_fairseq_file
    from alicemind.veco.finetuning import find_model_folder, load_tokenizer
    from alicemind.veco.seq2seq import VecoForConditionalGeneration

    folder = find_model_folder(Path(src))
    is_nlg = find_fairseq_file(folder) is not None
    if not is_nlg and (folder / "config.json").is_file():
        import json

        is_nlg = bool(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("is_encoder_decoder"))
    cls = VecoForConditionalGeneration if is_nlg else nlu_class_for(folder)
    model = cls.from_pretrained(folder, **{k: v for k, v in options.items() if v is not None})
    model.save_pretrained(dst, overwrite=overwrite)
    tokenizer_source = folder / "sentencepiece.bpe.model"
    if tokenizer_source.is_file() or (folder / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(folder)
        if options.get("dictionary"):
            from alicemind.veco.tokenization import VecoTokenizer

            tokenizer = VecoTokenizer(tokenizer._model_bytes, dictionary=options["dictionary"])
        tokenizer.save_pretrained(dst)
    return model
