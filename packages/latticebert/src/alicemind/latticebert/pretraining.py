"""LatticeBERT pre-training: masked segment prediction (MSP) over the lattice and the 3-way sentence relation.

Data (``create_chinese_pretraining_data_labert.py``, models-multimodal.md 3.4): one sentence per line, blank lines
between documents; each line's whitespace-separated spans become lattices (no word matches across a space). Pairs
``[CLS] A [SEP] B [SEP]`` are labelled 0 (B from a random document), 1 (B follows A) or 2 (A and B swapped).
MSP masks whole segments (the units between cut points: characters *and* every word over them) within a budget
of ``min(max_predictions, max(1, round(0.15 * units)))``; each masked unit becomes [MASK] 80%, stays 10%, or a
random character/word 10%, and keeps its positions. Instances are masked once and written to core's token shards.

Two documented departures from the original: every draw comes from one seeded ``random.Random`` (the original
mixed it with the global NumPy generator), and segments are tried in a random order without repetition, so the
budget is not under-filled by repeated draws.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alicemind.core.data import read_documents
from alicemind.core.data.shards import ShardDataset, ShardWriter
from alicemind.core.training import Trainer, TrainingConfig, move_to_device, seed_everything
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.latticebert.config import LatticeBertConfig
from alicemind.latticebert.lattice import Lattice, concatenate
from alicemind.latticebert.model import LatticeBertForPreTraining
from alicemind.latticebert.tokenization import LatticeBertTokenizer

FIELDS = ("input_ids", "token_type_ids", "lattice_starts", "lattice_ends", "mlm_labels")


@dataclass
class PretrainingDataConfig:
    """The original data generator's settings (its defaults, except ``dupe_factor`` which recipes set)."""

    max_seq_length: int = 128  # lattice units, specials included
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    next_sentence_type: int = 3

    def __post_init__(self) -> None:
        if self.next_sentence_type not in (2, 3):
            raise ValueError(f"next_sentence_type must be 2 or 3, got {self.next_sentence_type}")
        if self.max_seq_length < 5:
            raise ValueError(f"max_seq_length {self.max_seq_length} leaves no room for two texts")


def line_lattice(tokenizer: LatticeBertTokenizer, line: str) -> Lattice | None:
    """A corpus line: each whitespace-separated span's lattice, joined (positions continue across spans)."""
    spans = line.split()
    if not spans:
        return None
    return concatenate(tokenizer.lattices(spans))


def _copy(lattice: Lattice) -> Lattice:
    return Lattice(list(lattice.tokens), list(lattice.ids), list(lattice.starts), list(lattice.lengths),
                   [list(s) for s in lattice.segments])  # fmt: skip


def _pop_front(lattice: Lattice) -> None:
    """Drop the first unit; positions restart at 0 and segment indices shift down."""
    for seq in (lattice.tokens, lattice.ids, lattice.starts, lattice.lengths):
        seq.pop(0)
    low = min(lattice.starts, default=0)
    lattice.starts = [s - low for s in lattice.starts]
    lattice.segments = [kept for seg in lattice.segments if (kept := [i - 1 for i in seg if i > 0])]


def truncate_pair(a: Lattice, b: Lattice, max_units: int, rng: random.Random) -> None:
    """Drop units from the front or back (at random) of the longer side until both fit."""
    while len(a) + len(b) > max_units:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            _pop_front(longer)
        else:
            longer.pop_back()


def mask_segments(
    joined: Lattice, data: PretrainingDataConfig, vocab_size: int, mask_id: int, rng: random.Random
) -> tuple[list[int], list[int]]:
    """Masked segment prediction on ``joined`` (modified in place); returns (masked ids, labels with -100)."""
    budget = min(data.max_predictions_per_seq, max(1, round(len(joined) * data.masked_lm_prob)))
    ids, labels = list(joined.ids), [-100] * len(joined)
    chosen = 0
    for segment in rng.sample(joined.segments, len(joined.segments)):
        if chosen + len(segment) > budget:
            continue
        for index in segment:
            labels[index] = ids[index]
            draw = rng.random()
            if draw < 0.8:
                ids[index] = mask_id
            elif draw >= 0.9:
                ids[index] = rng.randrange(vocab_size)
        chosen += len(segment)
    return ids, labels


def create_instances(
    documents: Sequence[Sequence[Lattice]],
    tokenizer: LatticeBertTokenizer,
    data: PretrainingDataConfig,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Sentence-relation pairs with MSP masking from every document, ``dupe_factor`` times."""
    out = []
    max_units = data.max_seq_length - 3
    for _ in range(data.dupe_factor):
        for doc_index in range(len(documents)):
            out += _document_instances(documents, doc_index, tokenizer, data, max_units, rng)
    rng.shuffle(out)
    return out


def _document_instances(documents, doc_index, tokenizer, data, max_units, rng) -> list[dict[str, Any]]:
    document = documents[doc_index]
    target = rng.randint(2, max_units) if rng.random() < data.short_seq_prob else max_units
    instances, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            if chunk:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = concatenate([_copy(x) for x in chunk[:a_end]])
                if len(chunk) == 1 or rng.random() < 1.0 / data.next_sentence_type:
                    label, b = 0, _random_b(documents, doc_index, target - len(a), rng)
                    i -= len(chunk) - a_end  # the unused sentences start the next chunk
                else:
                    b = concatenate([_copy(x) for x in chunk[a_end:]])
                    label = 1
                    if data.next_sentence_type == 3 and rng.random() >= 0.5:
                        a, b, label = b, a, 2
                if b is not None and len(b) and len(a):
                    truncate_pair(a, b, max_units, rng)
                    instances.append(_finish(a, b, label, tokenizer, data, rng))
            chunk, length = [], 0
        i += 1
    return instances


def _random_b(documents, doc_index, room: int, rng) -> Lattice | None:
    others = [d for d in range(len(documents)) if d != doc_index] or [doc_index]
    other = documents[rng.choice(others)]
    start = rng.randrange(len(other))
    parts, length = [], 0
    for sentence in other[start:]:
        parts.append(_copy(sentence))
        length += len(sentence)
        if length >= max(1, room):
            break
    return concatenate(parts) if parts else None


def _finish(a, b, label, tokenizer, data, rng) -> dict[str, Any]:
    enc = tokenizer.join(a, b)
    ids, labels = mask_segments(enc.lattice, data, tokenizer.vocab_size, tokenizer.mask_token_id, rng)
    return {"input_ids": ids, "token_type_ids": enc.token_type_ids, "lattice_starts": enc.starts,
            "lattice_ends": enc.ends, "mlm_labels": labels, "sentence_label": label}  # fmt: skip


def build_shards(corpus: str | Path, tokenizer, data: PretrainingDataConfig, directory: Path, *, seed: int) -> int:
    """Read a corpus, build masked instances and write them into core's token shards; returns their number."""
    documents = []
    for doc in read_documents(corpus):
        lattices = [lat for line in doc if (lat := line_lattice(tokenizer, line)) is not None]
        if lattices:
            documents.append(lattices)
    if not documents:
        raise ValueError(f"{corpus}: no text to pre-train on")
    instances = create_instances(documents, tokenizer, data, random.Random(seed))
    with ShardWriter(directory, dtype="uint32", field_dtypes={"mlm_labels": "int32"}, overwrite=True) as writer:
        for instance in instances:
            writer.add(instance)
    return len(instances)


def pretraining_collator(pad_token_id: int):
    """Pad shard instances into the model's inputs."""

    def collate(items):
        length = max(len(it["input_ids"]) for it in items)
        batch = {}
        for name in FIELDS:
            fill = pad_token_id if name == "input_ids" else (-100 if name == "mlm_labels" else 0)
            batch[name] = torch.full((len(items), length), fill, dtype=torch.long)
            for row, it in enumerate(items):
                batch[name][row, : len(it[name])] = it[name]
        batch["attention_mask"] = torch.zeros((len(items), length), dtype=torch.long)
        for row, it in enumerate(items):
            batch["attention_mask"][row, : len(it["input_ids"])] = 1
        batch["sentence_labels"] = torch.tensor([it["sentence_label"] for it in items], dtype=torch.long)
        return batch

    return collate


def eval_losses(model, loader) -> dict[str, float]:
    """Mean MSP/MLM and sentence-relation losses and accuracies over ``loader`` (the evaluation instances)."""
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for batch in loader:
            out = model(**move_to_device(batch, device))
            for name, value in out.metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            count += 1
    return {name: total / max(count, 1) for name, total in sums.items()}


@dataclass
class PretrainResult:
    output_dir: Path
    model_dir: Path
    num_instances: int
    initial: dict[str, float]
    final: dict[str, float]


def run_pretraining(
    recipe: dict[str, Any], *, progress_bar: bool = True, overrides: Sequence[str] = ()
) -> PretrainResult:
    """Build the shards, pre-train, write ``output_dir/model`` (weights + tokenizer) and ``pretrain_results.json``."""
    from alicemind.core.cli import CliError

    corpus = recipe.get("corpus")
    if not corpus or not Path(corpus).is_file():
        raise CliError(f"corpus {corpus!r} is not a file (one sentence per line, blank lines between documents)")
    source = recipe.get("tokenizer") or recipe.get("model")
    if not source:
        raise CliError("give tokenizer=FOLDER (vocab.txt + lexicon.txt) or model=FOLDER")
    tokenizer = LatticeBertTokenizer.from_pretrained(source)
    data = PretrainingDataConfig(**dict(recipe.get("data") or {}))
    train_cfg = TrainingConfig.from_dict({"progress_bar": progress_bar, **dict(recipe.get("training") or {})})
    seed_everything(train_cfg.seed)
    output_dir = Path(recipe.get("output_dir") or "runs/pretrain")
    train_cfg.output_dir = str(output_dir)
    shard_dir = output_dir / "shards"
    count = build_shards(corpus, tokenizer, data, shard_dir, seed=train_cfg.seed)
    # Evaluation instances: from eval_corpus (held out) when given, else the training text paired and masked anew.
    eval_corpus = recipe.get("eval_corpus") or corpus
    if not Path(eval_corpus).is_file():
        raise CliError(f"eval_corpus {eval_corpus!r} is not a file")
    eval_data = PretrainingDataConfig(**{**dict(recipe.get("data") or {}), "dupe_factor": 1})
    build_shards(eval_corpus, tokenizer, eval_data, output_dir / "shards-eval", seed=train_cfg.seed + 1)
    if recipe.get("model"):
        model = LatticeBertForPreTraining.from_pretrained(recipe["model"], **dict(recipe.get("model_config") or {}))
    else:
        config = LatticeBertConfig.from_pretrained(
            recipe.get("scratch_config") or "latticebert.tiny",
            **{"vocab_size": tokenizer.vocab_size, **dict(recipe.get("model_config") or {})},
        )
        model = LatticeBertForPreTraining(config)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CliError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    collate = pretraining_collator(tokenizer.pad_token_id)
    batch_size = train_cfg.per_device_batch_size or 32
    loader = DataLoader(ShardDataset(shard_dir), batch_size=batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(train_cfg.seed))  # fmt: skip
    eval_loader = DataLoader(ShardDataset(output_dir / "shards-eval"), batch_size=batch_size, collate_fn=collate)
    initial = eval_losses(model, eval_loader)
    identity = recipe_identity(recipe, files={"corpus": corpus}, vocab=tokenizer.get_vocab(),
                               exclude=("training", "output_dir"), distributions=("alicemind-latticebert",))  # fmt: skip
    identity.overrides = list(overrides)
    trainer = Trainer(model, train_cfg, loader, eval_fn=lambda m: eval_losses(m, eval_loader),
                      run_identity=identity)  # fmt: skip
    trainer.train()
    final = eval_losses(trainer.model, eval_loader)
    model_dir = output_dir / "model"
    if trainer.dist.is_main:
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (output_dir / "pretrain_results.json").write_text(json.dumps({"initial": initial, "final": final}, indent=1))
    return PretrainResult(output_dir, model_dir, count, initial, final)
