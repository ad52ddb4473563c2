"""StructBERT pre-training run: raw documents -> WordPiece ids -> MLM + WSO + SSO instances -> memory-mapped shards
-> core's Trainer on :class:`StructBertForPreTraining` -> a model folder (our format) with its tokenizer.

The objectives and instance layout live in :mod:`alicemind.structbert.pretraining_data`; this module wires them
to a corpus, a tokenizer and the training loop, and measures each objective separately on held-out documents
(MLM and WSO share one prediction head, so the training loss cannot tell them apart; the evaluation sets can:
one is built with masking only, one with trigram shuffling only).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.data import read_documents
from alicemind.core.training import Trainer, TrainingConfig, move_to_device, seed_everything
from alicemind.structbert.config import StructBertConfig
from alicemind.structbert.model import StructBertForPreTraining
from alicemind.structbert.pretraining_data import (
    IGNORE_INDEX,
    build_pretraining_instances,
    load_pretraining_dataset,
    pretraining_collator,
    write_pretraining_shards,
)
from alicemind.structbert.tokenization import StructBertTokenizer

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # [PAD] first: pad_token_id 0, as BERT
RECIPE_KEYS = {"corpus", "corpus_format", "output_dir", "model", "tokenizer", "data", "training"}
DATA_DEFAULTS: dict[str, Any] = {
    "max_seq_length": 128,
    "max_predictions_per_seq": 32,
    "masked_lm_prob": 0.15,
    "wso_trigram_prob": 0.05,
    "short_seq_prob": 0.1,
    "sso_classes": 3,
    "dupe_factor": 5,
    "whole_word_mask": None,  # None, "wordpiece" (## pieces join their word) or "jieba" (Chinese words)
    "eval_fraction": 0.05,
    "eval_max_instances": 512,
    "eval_wso_trigram_prob": 0.3,
    "seed": 12345,
}


@dataclass
class PretrainResult:
    """What a run produced: the model folder, per-objective held-out metrics before and after, the train log."""

    output_dir: Path
    model_dir: Path
    num_instances: int
    initial: dict[str, float]
    final: dict[str, float]
    log_history: list[dict[str, float]] = field(default_factory=list)


def train_wordpiece_vocab(
    documents: Sequence[Sequence[str]], vocab_size: int, out_file: str | Path, *, lowercase: bool = True
) -> Path:
    """Learn a WordPiece vocabulary from ``documents`` with the ``tokenizers`` trainer; write BERT's vocab.txt."""
    import tokenizers
    from tokenizers import normalizers, pre_tokenizers, trainers

    backend = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False, continuing_subword_prefix="##"
    )
    backend.train_from_iterator((s for doc in documents for s in doc), trainer=trainer)
    vocab = backend.get_vocab()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("".join(f"{tok}\n" for tok in sorted(vocab, key=vocab.__getitem__)), encoding="utf-8")
    return out_file


def tokenize_documents(tokenizer: StructBertTokenizer, documents: Sequence[Sequence[str]]) -> list[list[np.ndarray]]:
    """Every sentence to WordPiece ids (no special tokens), in one batched call to the Rust tokenizer."""
    flat = [s for doc in documents for s in doc]
    encoded = tokenizer.backend.encode_batch(flat, add_special_tokens=False)
    ids = iter(np.asarray(e.ids, dtype=np.int64) for e in encoded)
    return [[next(ids) for _ in doc] for doc in documents]


def continuation_flags(tokenizer: StructBertTokenizer, mode: str | None) -> np.ndarray | Callable | None:
    """Whole-word grouping for masking: "wordpiece" (``##`` pieces), "jieba" (Chinese words), or None."""
    if mode is None or mode is False:
        return None
    if mode == "wordpiece":
        vocab = tokenizer.get_vocab()
        flags = np.zeros(tokenizer.vocab_size, dtype=bool)
        flags[[i for tok, i in vocab.items() if tok.startswith("##") and i < len(flags)]] = True
        return flags
    if mode == "jieba":
        return _jieba_continuation(tokenizer)
    raise CliError(f"data.whole_word_mask must be null, 'wordpiece' or 'jieba', got {mode!r}")


def _jieba_continuation(tokenizer: StructBertTokenizer) -> Callable[[np.ndarray], np.ndarray]:
    from alicemind.core.tokenization import JiebaSegmenter, whole_word_groups

    segmenter = JiebaSegmenter()
    specials = set(tokenizer.all_special_tokens)

    def flags(ids: np.ndarray) -> np.ndarray:
        tokens = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
        text = "".join(t[2:] if t.startswith("##") else t for t in tokens if t not in specials)
        out = np.zeros(len(ids), dtype=bool)
        for group in whole_word_groups(tokens, segmenter.segment(text), skip_tokens=specials):
            out[group[1:]] = True
        return out

    return flags


def _section(recipe: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    values = dict(recipe.get(name) or {})
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise CliError(f"unknown key(s) {unknown} in recipe section '{name}'; known: {sorted(defaults)}")
    return {**defaults, **values}


def _load_tokenizer(spec: dict[str, Any], documents: list[list[str]], work_dir: Path) -> StructBertTokenizer:
    vocab = spec.get("vocab")
    lowercase = spec.get("lowercase", True)
    if vocab is None:
        size = spec.get("train_vocab_size")
        if not size:
            raise CliError("the recipe gives neither tokenizer.vocab nor tokenizer.train_vocab_size")
        vocab = train_wordpiece_vocab(documents, int(size), work_dir / "vocab.txt", lowercase=lowercase)
    path = Path(vocab)
    if path.is_dir():
        return StructBertTokenizer.from_pretrained(path)
    if not path.is_file():
        raise CliError(f"tokenizer.vocab {path} does not exist")
    return StructBertTokenizer.from_vocab_file(path, lowercase=lowercase)


def _build_model(spec: dict[str, Any], vocab_size: int) -> StructBertForPreTraining:
    overrides = dict(spec.get("config") or {})
    if spec.get("init"):
        model = StructBertForPreTraining.from_pretrained(spec["init"], **overrides)
    else:
        preset = spec.get("preset") or "structbert.tiny"
        try:
            config = StructBertConfig.from_preset(preset, **{"vocab_size": vocab_size, **overrides})
        except (KeyError, TypeError, ValueError) as err:
            raise CliError(f"model: cannot build preset {preset!r} with {overrides}: {err}") from None
        model = StructBertForPreTraining(config)
    if model.config.vocab_size < vocab_size:
        raise CliError(f"the model's vocab_size {model.config.vocab_size} is smaller than the tokenizer's {vocab_size}")
    return model


class ObjectiveEvaluator:
    """Held-out loss and accuracy of each objective: MLM on masking-only instances, WSO on shuffle-only ones,
    SSO on the masking-only instances (as corrupted in training)."""

    def __init__(self, mlm_set: list[dict], wso_set: list[dict], pad_id: int, batch_size: int = 64) -> None:
        collate = pretraining_collator(pad_id)
        self.batches = {
            name: [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
            for name, rows in (("mlm", mlm_set), ("wso", wso_set))
            if rows
        }

    @torch.no_grad()
    def __call__(self, model: StructBertForPreTraining) -> dict[str, float]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        sums: dict[str, float] = {}
        for name, batches in self.batches.items():
            for batch in batches:
                batch = move_to_device(batch, device)
                enc = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                labels = batch["mlm_labels"]
                where = labels != IGNORE_INDEX
                logits = model.cls_predictions(enc.last_hidden_state[where]).float()
                target = labels[where]
                _add(sums, f"{name}_loss", F.cross_entropy(logits, target, reduction="sum"), target.numel())
                _add(sums, f"{name}_acc", (logits.argmax(-1) == target).sum(), target.numel())
                if name == "mlm":
                    sso = model.cls_seq_relationship(enc.pooler_output).float()
                    order = batch["sentence_order_label"]
                    _add(sums, "sso_loss", F.cross_entropy(sso, order, reduction="sum"), order.numel())
                    _add(sums, "sso_acc", (sso.argmax(-1) == order).sum(), order.numel())
        model.train(was_training)
        return {k[:-2]: v / max(sums[k[:-2] + "#n"], 1) for k, v in sums.items() if k.endswith("#s")}


def _add(sums: dict[str, float], key: str, total: torch.Tensor, count: int) -> None:
    sums[key + "#s"] = sums.get(key + "#s", 0.0) + float(total)
    sums[key + "#n"] = sums.get(key + "#n", 0.0) + count


def _split_documents(docs: list, fraction: float, rng: np.random.Generator) -> tuple[list, list]:
    if len(docs) < 6 or fraction <= 0:
        return docs, []
    n_eval = max(2, int(math.ceil(len(docs) * fraction)))
    order = rng.permutation(len(docs))
    return [docs[i] for i in order[n_eval:]], [docs[i] for i in order[:n_eval]]


def run_pretraining(recipe: dict[str, Any], *, progress_bar: bool = True) -> PretrainResult:
    """Run a pre-training recipe (see ``recipes/pretrain-demo.yaml`` for every key)."""
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise CliError(f"unknown recipe key(s) {unknown}; known: {sorted(RECIPE_KEYS)}")
    if not recipe.get("corpus"):
        raise CliError("no corpus given: add corpus=PATH (text: one sentence per line, blank line between documents)")
    corpus = Path(recipe["corpus"])
    if not corpus.is_file():
        raise CliError(f"corpus {corpus} does not exist")
    data = _section(recipe, "data", DATA_DEFAULTS)
    output_dir = Path(recipe.get("output_dir") or "runs/pretrain")
    documents = read_documents(corpus, format=recipe.get("corpus_format") or "auto")
    if len(documents) < 2:
        raise CliError(f"corpus {corpus} holds {len(documents)} document(s); SSO needs at least 2")
    rng = np.random.default_rng(data["seed"])
    train_docs, eval_docs = _split_documents(documents, data["eval_fraction"], rng)
    tokenizer = _load_tokenizer(dict(recipe.get("tokenizer") or {}), train_docs, output_dir / "data")
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    seed_everything(train_cfg.seed)
    model = _build_model(dict(recipe.get("model") or {}), tokenizer.vocab_size)

    common = dict(
        max_seq_length=data["max_seq_length"],
        max_predictions_per_seq=data["max_predictions_per_seq"],
        vocab_size=tokenizer.vocab_size,
        cls_id=tokenizer.cls_token_id,
        sep_id=tokenizer.sep_token_id,
        mask_id=tokenizer.mask_token_id,
        pad_id=tokenizer.pad_token_id,
        special_ids=tokenizer.all_special_ids,
        short_seq_prob=data["short_seq_prob"],
        sso_classes=data["sso_classes"],
        whole_word_groups=continuation_flags(tokenizer, data["whole_word_mask"]),
    )
    instances = build_pretraining_instances(
        tokenize_documents(tokenizer, train_docs),
        masked_lm_prob=data["masked_lm_prob"],
        wso_trigram_prob=data["wso_trigram_prob"],
        dupe_factor=data["dupe_factor"],
        rng=rng,
        **common,
    )
    shards = write_pretraining_shards(
        instances, output_dir / "data" / "train", vocab_size=tokenizer.vocab_size, overwrite=True
    )
    evaluator = _evaluator(tokenizer, eval_docs, data, common, rng)

    train_cfg.output_dir = str(output_dir)
    dataset = load_pretraining_dataset(shards)
    loader = DataLoader(
        dataset,
        batch_size=train_cfg.per_device_batch_size or 32,
        shuffle=True,
        collate_fn=pretraining_collator(tokenizer.pad_token_id),
        drop_last=len(dataset) >= 2 * (train_cfg.per_device_batch_size or 32),
    )
    trainer = Trainer(model, train_cfg, loader, eval_fn=evaluator)
    initial = evaluator(trainer.model) if evaluator else {}
    if initial:
        logger.info("held-out before training: %s", _fmt(initial))
    state = trainer.train()
    final = evaluator(trainer.model) if evaluator else {}
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (output_dir / "held_out.json").write_text(json.dumps({"initial": initial, "final": final}, indent=1))
    return PretrainResult(output_dir, model_dir, len(instances), initial, final, list(state.log_history))


def _evaluator(tokenizer, eval_docs, data, common, rng) -> ObjectiveEvaluator | None:
    if len(eval_docs) < 2:
        return None
    ids = tokenize_documents(tokenizer, eval_docs)
    limit = data["eval_max_instances"]
    mlm = build_pretraining_instances(ids, masked_lm_prob=data["masked_lm_prob"], wso_trigram_prob=0.0,
                                      dupe_factor=4, rng=rng, **common)[:limit]  # fmt: skip
    wso = build_pretraining_instances(ids, masked_lm_prob=0.0, wso_trigram_prob=data["eval_wso_trigram_prob"],
                                      dupe_factor=4, rng=rng, **common)[:limit]  # fmt: skip
    wso = [inst for inst in wso if (np.asarray(inst["mlm_labels"]) != IGNORE_INDEX).any()]
    return ObjectiveEvaluator(mlm, wso, tokenizer.pad_token_id)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items()))
