"""``e2e`` / ``webnlg`` / ``dart`` recipes: PST on Hugging Face GPT-2 (its Conv1D blocks) for data-to-text, as the
original ``NLG/`` (a fork of Microsoft LoRA's GPT-2 code), with beam-search decoding, BLEU and ROUGE-L."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from alicemind.core.cli import CliError
from alicemind.core.metrics import corpus_bleu, rouge
from alicemind.pst.recipes_common import finish_run, require_transformers, train_with_pst

RECIPE_KEYS = {
    "kind", "dataset", "train_file", "eval_file", "model", "tokenizer", "output_dir", "seq_len", "label_smooth",
    "eval_limit", "generation", "target_modules", "exclude_modules", "trainable_modules", "pst", "training",
}  # fmt: skip


def _webnlg(data: dict) -> list[tuple[str, str]]:
    pairs = []
    for i, entry in enumerate(data["entries"]):
        item = entry[str(i + 1)]
        triples = " | ".join(f"{t['subject']} : {t['property']} : {t['object']}" for t in item["modifiedtripleset"])
        pairs += [(triples, lex["lex"]) for lex in item["lexicalisations"] if lex.get("comment") == "good"]
    return pairs


def _dart(data: list) -> list[tuple[str, str]]:
    pairs = []
    for example in data:
        triples = " | ".join(f"{s} : {r.lower()} : {o}" for s, r, o in example["tripleset"])
        pairs += [(triples, note["text"]) for note in example["annotations"]]
    return pairs


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(context, completion) pairs from E2E ``*.txt`` (``context||text`` lines), the original's formatted
    ``*.jsonl`` ({"context", "completion"}), WebNLG 2017 ``*.json`` (good lexicalisations) or DART ``*.json``."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"data file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        rows = [line.split("||", 1) for line in text.splitlines() if "||" in line]
        return [(c.strip(), t.strip()) for c, t in rows]
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [(r["context"], r["completion"]) for r in rows]
    data = json.loads(text)
    return _webnlg(data) if isinstance(data, dict) and "entries" in data else _dart(data)


def encode_pairs(tokenizer, pairs, seq_len: int) -> list[dict[str, list[int]]]:
    """``context <eos> ' ' completion <eos>`` (the original's --add_bos --add_eos with GPT-2's 50256 as both),
    labels on the completion only, truncated to ``seq_len``."""
    eos = tokenizer.eos_token_id
    rows = []
    for context, completion in pairs:
        prompt = tokenizer.encode(context) + [eos]
        target = tokenizer.encode(" " + completion) + [eos]
        ids = (prompt + target)[:seq_len]
        labels = ([-100] * len(prompt) + target)[:seq_len]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def _collate(rows, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lm_loss(label_smooth: float):
    """Next-token loss over completion tokens with label smoothing (the original's ``(1-e) nll + e mean(-log p)``,
    which is torch's ``label_smoothing``)."""

    def compute(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        target = batch["labels"][:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100,
                               label_smoothing=label_smooth)  # fmt: skip
        return {"loss": loss}

    return compute


def group_references(pairs) -> tuple[list[str], list[list[str]]]:
    """Unique contexts in order with all their references (E2E, WebNLG and DART have several per input)."""
    refs: dict[str, list[str]] = {}
    for context, completion in pairs:
        refs.setdefault(context, []).append(completion)
    return list(refs), list(refs.values())


@torch.no_grad()
def generate(model, tokenizer, contexts: list[str], gen: dict[str, Any]) -> list[str]:
    """Beam search per context (the original's beam 10, length penalty 0.8, no-repeat 4-grams, 64 new tokens)."""
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    outputs = []
    for context in contexts:
        prompt = torch.tensor([tokenizer.encode(context) + [eos]], device=device)
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), num_beams=int(gen.get("num_beams", 10)),
                             length_penalty=float(gen.get("length_penalty", 0.8)),
                             no_repeat_ngram_size=int(gen.get("no_repeat_ngram_size", 4)),
                             repetition_penalty=float(gen.get("repetition_penalty", 1.0)),
                             max_new_tokens=int(gen.get("max_new_tokens", 64)), eos_token_id=eos, pad_token_id=eos,
                             do_sample=False)  # fmt: skip
        outputs.append(tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True).strip())
    return outputs


def nlg_metrics(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """BLEU (sacrebleu, 13a) and ROUGE-L F (rouge-score) as fractions, multi-reference."""
    return {
        "bleu": corpus_bleu(predictions, references),
        "rougeL": rouge(predictions, references, rouge_types=("rougeL",))["rougeL"],
    }


def run_nlg(recipe: dict[str, Any], *, progress_bar: bool = True) -> dict[str, Any]:
    """Convert GPT-2's blocks to PST, fine-tune, decode the eval file with beam search, score, merge and save."""
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise CliError(f"unknown recipe key(s) {unknown}; known: {sorted(RECIPE_KEYS)}")
    transformers = require_transformers()
    if not recipe.get("model") or not recipe.get("train_file") or not recipe.get("eval_file"):
        raise CliError("add model=GPT2_FOLDER train_file=PATH eval_file=PATH")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(recipe.get("tokenizer") or recipe["model"]))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(recipe["model"]))
    seq_len = int(recipe.get("seq_len") or 512)
    train = encode_pairs(tokenizer, read_pairs(recipe["train_file"]), seq_len)
    contexts, references = group_references(read_pairs(recipe["eval_file"]))
    limit = recipe.get("eval_limit")
    contexts, references = (contexts[:limit], references[:limit]) if limit else (contexts, references)
    batch = int((recipe.get("training") or {}).get("per_device_batch_size") or 8)
    pad = tokenizer.eos_token_id
    loader = DataLoader(train, batch_size=batch, shuffle=True, collate_fn=lambda rows: _collate(rows, pad))
    gen = dict(recipe.get("generation") or {})
    predictions: list[str] = []

    def eval_fn(m) -> dict[str, float]:
        predictions[:] = generate(m, tokenizer, contexts, gen)
        return nlg_metrics(predictions, references)

    run = train_with_pst(model, recipe, loader, eval_fn, progress_bar=progress_bar,
                         compute_loss=lm_loss(float(recipe.get("label_smooth") or 0.0)))  # fmt: skip
    results = finish_run(run, {"kind": "nlg", "dataset": recipe.get("dataset"), "model": str(recipe["model"])},
                         metric="bleu")  # fmt: skip
    tokenizer.save_pretrained(str(run.output_dir / "model"))
    lines = [json.dumps({"context": c, "prediction": p, "references": r}) for c, p, r in
             zip(contexts, predictions, references)]  # fmt: skip
    (run.output_dir / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return results
