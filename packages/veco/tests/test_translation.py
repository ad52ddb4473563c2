"""A tiny translation fine-tune on a synthetic task (word reversal between two language tags) through the
``finetune`` runner: label-smoothed CE, polynomial decay, checkpoint averaging, beam-5 generation to [tgt]."""

from __future__ import annotations

import io
import random

import pytest
import sentencepiece as spm
import torch

from alicemind.veco import VecoConfig, VecoForConditionalGeneration, VecoTokenizer
from alicemind.veco.finetuning import finetune
from alicemind.veco.translation import encode_translation_pairs, target_ids

LETTERS = list("abcdef")


def _pairs(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(LETTERS) for _ in range(rng.randint(2, 4))]
        out.append((" ".join(words), " ".join(reversed(words))))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("wmt")
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([s for s, _ in _pairs(300, 0)]), model_writer=buffer, vocab_size=9,
        model_type="word", character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    (root / "sentencepiece.bpe.model").write_bytes(buffer.getvalue())
    plain = VecoTokenizer(root / "sentencepiece.bpe.model")
    (root / "dict.txt").write_text(plain.dictionary_text() + "[de] 1\n[en] 1\n", encoding="utf-8")
    tok = VecoTokenizer(root / "sentencepiece.bpe.model", dictionary=root / "dict.txt")
    torch.manual_seed(0)
    config = VecoConfig.from_preset("veco.tiny.nlg", vocab_size=len(tok), max_position_embeddings=34,
                                    hidden_dropout_prob=0.0)  # fmt: skip
    model = VecoForConditionalGeneration(config)
    model.save_pretrained(root / "init")
    tok.save_pretrained(root / "init")
    data = root / "data"
    data.mkdir()
    for name, pairs in (("train.tsv", _pairs(400, 1)), ("test.tsv", _pairs(40, 2))):
        (data / name).write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return root, tok


def test_sequence_layout_follows_the_original(workdir):
    _, tok = workdir
    en, de, eos = tok.lang_id("en"), tok.lang_id("de"), tok.eos_token_id
    (feature,) = encode_translation_pairs(tok, [("a b", "b a")], "en", "de")
    a, b = tok.convert_tokens_to_ids(["▁a", "▁b"])
    assert feature["input_ids"] == [a, b, eos, en]  # tok... </s> [src]
    assert feature["labels"] == [b, a, eos, de]  # tok... </s> [tgt]
    assert feature["decoder_input_ids"] == [de, b, a, eos]  # [tgt] tok... </s>
    assert target_ids([7], 2, 9) == ([9, 7, 2], [7, 2, 9])


def test_reversal_fine_tune_reaches_exact_match_through_generation(workdir, tmp_path):
    root, _ = workdir
    recipe = {
        "task": "synthetic-reversal", "kind": "translation", "model": str(root / "init"), "tokenizer": None,
        "config": {}, "load": {}, "data_dir": str(root / "data"), "train_file": "train.tsv", "eval_file": "test.tsv",
        "languages": None, "src_lang": "en", "tgt_lang": "de", "label_smoothing": 0.1, "max_pieces": 250,
        "average_last_checkpoints": 2, "eval_batch_size": 64,
        "generation": {"num_beams": 5, "max_new_tokens": 10},
        "training": {"max_steps": 300, "per_device_batch_size": 32, "lr": 5e-3, "scheduler": "polynomial",
                     "warmup_steps": 20, "precision": "fp32", "adam_betas": [0.9, 0.98], "weight_decay": 0.01, "max_grad_norm": 1.0,
                     "seed": 222, "save_every": 25, "keep_last_n": 2, "progress_bar": False, "log_every": 50,
                     "output_dir": str(tmp_path / "run")},
    }  # fmt: skip
    result = finetune(recipe, progress=False)
    metrics = result["results"]["all"]
    assert metrics["exact_match"] >= 0.95, metrics
    assert metrics["bleu"] >= 0.9
    saved = VecoForConditionalGeneration.from_pretrained(result["output_dir"])
    assert saved.config.decoder_layers == 2 and saved.source_format == "alicemind"
