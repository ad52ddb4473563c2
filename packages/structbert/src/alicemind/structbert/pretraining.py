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
import sys
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
from alicemind.core.training import (
    RunConflictError,
    RunIdentity,
    Trainer,
    TrainingConfig,
    move_to_device,
    seed_everything,
)
from alicemind.core.training.run_manifest import clear_run, code_versions, plan_run, sha256_file, sha256_tree
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
VOCAB_FILE = "vocab.txt"
DATA_MANIFEST = "data.json"  # what output_dir/data was built from, and the hashes of what was built
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
        # Written beside and renamed into place, so a killed run never leaves half a vocabulary.
        tmp = train_wordpiece_vocab(documents, int(size), work_dir / ".vocab.txt.tmp", lowercase=lowercase)
        vocab = tmp.replace(work_dir / VOCAB_FILE)
    return _open_tokenizer(Path(vocab), lowercase)


def _open_tokenizer(path: Path, lowercase: bool) -> StructBertTokenizer:
    if path.is_dir():
        return StructBertTokenizer.from_pretrained(path)
    if not path.is_file():
        raise CliError(f"tokenizer.vocab {path} does not exist")
    return StructBertTokenizer.from_vocab_file(path, lowercase=lowercase)


def _tokenizer_fingerprint(spec: dict[str, Any], data_dir: Path) -> str:
    path = Path(spec["vocab"]) if spec.get("vocab") is not None else data_dir / VOCAB_FILE
    return sha256_tree(path) if path.is_dir() else sha256_file(path)


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


def run_pretraining(
    recipe: dict[str, Any], *, progress_bar: bool = True, overrides: Sequence[str] = ()
) -> PretrainResult:
    """Run a pre-training recipe (see ``recipes/pretrain-demo.yaml`` for every key).

    The vocabulary (when learnt) and the shards are built once into ``output_dir/data`` and reused, checked by
    hash, when the same run resumes; ``output_dir/run.json`` records what defines the run (see
    :mod:`alicemind.core.training.run_manifest`). ``training.overwrite`` / ``training.resume="force"`` are the
    command line's ``--overwrite`` / ``--resume``. ``overrides`` is recorded in run.json for reading.
    """
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
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    train_cfg.output_dir = str(output_dir)
    tok_spec = dict(recipe.get("tokenizer") or {})
    # The tokenizer's content is fingerprinted, so where a given vocab file lies is not part of the run.
    inputs = {
        "corpus_format": recipe.get("corpus_format") or "auto",
        "tokenizer": {k: v for k, v in tok_spec.items() if k != "vocab"},
        "data": data,
    }
    identity = RunIdentity(
        {**inputs, "model": dict(recipe.get("model") or {})},
        {"corpus": sha256_file(corpus)},
        code_versions("alicemind-structbert"),
        list(overrides),
    )
    plan = plan_run(output_dir, identity.updated(values={"training": train_cfg.result_values()}),
                    resume=train_cfg.resume, overwrite=train_cfg.overwrite, partial=True)  # fmt: skip
    if plan.action == "overwrite":
        deleted = clear_run(output_dir, extra=("data", "model", "held_out.json"))
        print(f"alicemind: --overwrite: starting a new run in {output_dir}; deleted {', '.join(deleted)}",
              file=sys.stderr)  # fmt: skip
    documents = read_documents(corpus, format=inputs["corpus_format"])
    if len(documents) < 2:
        raise CliError(f"corpus {corpus} holds {len(documents)} document(s); SSO needs at least 2")
    rng = np.random.default_rng(data["seed"])
    train_docs, eval_docs = _split_documents(documents, data["eval_fraction"], rng)
    built = _prepare_data(output_dir / "data", {**inputs, "corpus": identity.fingerprints["corpus"]}, tok_spec,
                          train_docs, data, rng, keep_vocab=plan.action == "resume")  # fmt: skip
    tokenizer, shards, common = built.tokenizer, built.shards, built.common
    identity = identity.updated(fingerprints={"tokenizer": built.tokenizer_sha256, "shards": built.shards_sha256})
    seed_everything(train_cfg.seed)
    model = _build_model(dict(recipe.get("model") or {}), tokenizer.vocab_size)
    evaluator = _evaluator(tokenizer, eval_docs, data, common, rng)

    dataset = load_pretraining_dataset(shards)
    loader = DataLoader(
        dataset,
        batch_size=train_cfg.per_device_batch_size or 32,
        shuffle=True,
        collate_fn=pretraining_collator(tokenizer.pad_token_id),
        drop_last=len(dataset) >= 2 * (train_cfg.per_device_batch_size or 32),
    )
    trainer = Trainer(model, train_cfg, loader, eval_fn=evaluator, run_identity=identity)
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
    trainer.finalize()
    return PretrainResult(output_dir, model_dir, len(dataset), initial, final, list(state.log_history))


@dataclass
class _Data:
    tokenizer: StructBertTokenizer
    shards: Path
    common: dict[str, Any]
    tokenizer_sha256: str
    shards_sha256: str


def _common(tokenizer: StructBertTokenizer, data: dict[str, Any]) -> dict[str, Any]:
    return dict(
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


def _prepare_data(
    data_dir: Path,
    inputs: dict[str, Any],
    tok_spec: dict[str, Any],
    train_docs: list,
    data: dict[str, Any],
    rng: np.random.Generator,
    *,
    keep_vocab: bool,
) -> _Data:
    """Build the vocabulary and the shards into ``data_dir`` once, or reuse them after checking their hashes.

    ``data.json`` is written last: without it nothing in ``data_dir`` is trusted and everything is rebuilt (a run
    killed while building). ``rng`` ends where building the instances leaves it, reused or not, so the held-out
    sets drawn from it next are the same either way. ``keep_vocab`` (a resumed run whose data inputs differ, under
    ``--resume``) rebuilds the shards but keeps the learnt vocabulary its checkpoints were trained with.
    """
    manifest_path = data_dir / DATA_MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    lowercase = tok_spec.get("lowercase", True)
    learnt = tok_spec.get("vocab") is None
    if manifest is not None and manifest["inputs"] == json.loads(json.dumps(inputs, default=str)):
        found = {"tokenizer": _tokenizer_fingerprint(tok_spec, data_dir), "shards": sha256_tree(data_dir / "train")}
        changed = [name for name in found if found[name] != manifest[f"{name}_sha256"]]
        if changed:
            raise RunConflictError(
                f"the {' and '.join(changed)} in {data_dir} changed after this run built them (sha256 differs); "
                "pass --overwrite to rebuild the data and start fresh"
            )
        tokenizer = _open_tokenizer(data_dir / VOCAB_FILE if learnt else Path(tok_spec["vocab"]), lowercase)
        rng.bit_generator.state = manifest["rng_after_build"]
        return _Data(tokenizer, data_dir / "train", _common(tokenizer, data), found["tokenizer"], found["shards"])
    if manifest is not None:
        print(f"alicemind: {data_dir} was built from other inputs: rebuilding it", file=sys.stderr)
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)
    if learnt and keep_vocab and (data_dir / VOCAB_FILE).is_file():
        print(f"alicemind: keeping {data_dir / VOCAB_FILE}: the resumed checkpoints were trained with it",
              file=sys.stderr)  # fmt: skip
        tokenizer = _open_tokenizer(data_dir / VOCAB_FILE, lowercase)
    else:
        tokenizer = _load_tokenizer(tok_spec, train_docs, data_dir)
    common = _common(tokenizer, data)
    instances = build_pretraining_instances(
        tokenize_documents(tokenizer, train_docs),
        masked_lm_prob=data["masked_lm_prob"],
        wso_trigram_prob=data["wso_trigram_prob"],
        dupe_factor=data["dupe_factor"],
        rng=rng,
        **common,
    )
    shards = write_pretraining_shards(instances, data_dir / "train", vocab_size=tokenizer.vocab_size, overwrite=True)
    built = _Data(tokenizer, shards, common, _tokenizer_fingerprint(tok_spec, data_dir), sha256_tree(shards))
    record = {
        "inputs": inputs,
        "tokenizer_sha256": built.tokenizer_sha256,
        "shards_sha256": built.shards_sha256,
        "num_instances": len(instances),
        "rng_after_build": rng.bit_generator.state,
    }
    tmp = data_dir / f".{DATA_MANIFEST}.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(manifest_path)
    return built


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
