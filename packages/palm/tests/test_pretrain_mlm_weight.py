"""The pretrain recipe's ``mlm_weight`` reaches the loss: 0 trains the decoder objective alone, 1.0 is the default."""

from __future__ import annotations

import random

import pytest
import torch

from alicemind.core.cli import CliError, load_recipe
from alicemind.palm.runner import pretrain

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma omega".split()


@pytest.fixture
def tiny_setup(tmp_path):
    """A whole-word WordPiece vocab.txt and a corpus of random sentences over it."""
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    rng = random.Random(0)
    docs = ["\n".join(" ".join(rng.choices(WORDS, k=8)) for _ in range(3)) for _ in range(24)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return corpus, folder


def _recipe(corpus, tokenizer, out, **extra) -> dict:
    recipe = load_recipe("palm", "pretrain")
    recipe.update(corpus=str(corpus), tokenizer=str(tokenizer), **extra)
    recipe["data"].update(max_source_length=16, max_target_length=8)
    recipe["training"].update(max_steps=3, per_device_batch_size=8, log_every=1, precision="fp32", device="cpu",
                              progress_bar=False, resume=None, output_dir=str(out))  # fmt: skip
    return recipe


def _logged(result) -> list[dict]:
    rows = [r for r in result["history"] if "loss" in r]
    assert len(rows) == 3 and all("mlm_loss" in r and "lm_loss" in r for r in rows)
    return rows


def test_recipe_default_is_one():
    assert load_recipe("palm", "pretrain")["mlm_weight"] == 1.0


def test_zero_weight_trains_the_decoder_loss_only(tiny_setup, tmp_path):
    corpus, tok = tiny_setup
    torch.manual_seed(0)
    rows = _logged(pretrain(_recipe(corpus, tok, tmp_path / "lm", mlm_weight=0.0)))
    for r in rows:
        assert r["loss"] == pytest.approx(r["lm_loss"], abs=1e-6)
        # The MLM head is still evaluated (and logged), near ln(19) for a random model, but not trained.
        assert r["mlm_loss"] > 2.0


@pytest.mark.parametrize("drop_key", [False, True])
def test_default_weight_adds_both_losses(tiny_setup, tmp_path, drop_key):
    corpus, tok = tiny_setup
    recipe = _recipe(corpus, tok, tmp_path / "joint")
    if drop_key:  # a recipe written before the key existed keeps the joint objective
        del recipe["mlm_weight"]
    torch.manual_seed(0)
    for r in _logged(pretrain(recipe)):
        assert r["loss"] == pytest.approx(r["lm_loss"] + r["mlm_loss"], rel=1e-5)
        assert r["mlm_loss"] > 2.0


@pytest.mark.parametrize("bad", [-0.5, "high", True])
def test_bad_weight_is_a_clear_error(tiny_setup, tmp_path, bad):
    corpus, tok = tiny_setup
    with pytest.raises(CliError, match="mlm_weight must be a number >= 0"):
        pretrain(_recipe(corpus, tok, tmp_path / "bad", mlm_weight=bad))
