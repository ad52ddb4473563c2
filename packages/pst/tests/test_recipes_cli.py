"""The finetune recipes end to end on tiny data: a tiny BERT saved as a Hugging Face folder, a tiny GPT-2."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from alicemind.core.cli import main

WORDS = ["alpha", "beta", "gamma", "delta", "stone", "river", "cloud", "paper", "light", "sound"]


def _sentences(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.choices(WORDS, k=5)
        words.insert(rng.randrange(6), "good" if label else "bad")  # the label is one word: learnable fast
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture
def bert_folder(tmp_path, tiny_bert_config):
    from transformers import BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from tokenizers.implementations import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)
    BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                      cls_token="[CLS]", mask_token="[MASK]").save_pretrained(folder)  # fmt: skip
    # A wider init than BERT's 0.02 so that a random 2-layer encoder's [CLS] depends on the words at all.
    BertForSequenceClassification(tiny_bert_config(vocab_size=len(vocab), initializer_range=0.2)).save_pretrained(
        folder
    )
    return folder


def _write_sst2(folder, train, dev):
    folder.mkdir()
    for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
        (folder / name).write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))


def test_glue_recipe_end_to_end(tmp_path, bert_folder, capsys):
    _write_sst2(tmp_path / "SST-2", _sentences(64, 0), _sentences(32, 1))
    out = tmp_path / "run"
    status = main(["pst", "finetune", "--recipe", "glue-sst-2", f"data_dir={tmp_path}", f"model={bert_folder}",
                   f"output_dir={out}", "training.num_epochs=6", "training.per_device_batch_size=16", "training.lr=1e-2",
                   "training.log_every=1", "pst.weight_rank=4", "pst.mask_rank=4", "--no-progress"])  # fmt: skip
    assert status == 0
    results = json.loads((out / "pst_results.json").read_text())
    assert '"merged_sparsity"' in capsys.readouterr().out  # the results are printed too
    losses = results["losses"]
    assert len(losses) == 24 and statistics.fmean(losses[-4:]) < 0.5 * statistics.fmean(losses[:4])
    assert results["merged_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert len(results["evaluations"]) == 6  # once per epoch
    assert results["final"]["sparsity"] == pytest.approx(0.9)
    assert results["final"]["accuracy"] >= 0.9
    assert results["best_in_final_window"]["step"] > 24 - 0.3 * 24
    assert results["trainable_parameters"] == 2 * (4 * (8 * 64 + 64) + 2 * (8 * 96 + 96)) + 32 * 2 + 2  # PST + head
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(out / "model")  # plain BERT, no PST code
    weight = merged.bert.encoder.layer[1].output.dense.weight
    assert int((weight == 0).sum()) == int(0.9 * weight.numel())


def test_glue_recipe_errors(tmp_path, bert_folder):
    assert main(["pst", "finetune", "--recipe", "glue-sst-2", f"model={bert_folder}"]) == 2  # no data_dir
    assert main(["pst", "finetune", "--recipe", "glue-sst-2", "pst.final_sparsity=1.0", f"model={bert_folder}",
                 f"data_dir={tmp_path}"]) == 2  # fmt: skip
    assert main(["pst", "finetune", "--recipe", "glue-nope"]) == 2


@pytest.fixture
def gpt2_folder(tmp_path, tiny_gpt2_config):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2LMHeadModel, GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [f"name : {w} | food : {v}" for w in WORDS for v in ("Thai", "French")] + [" ".join(WORDS)] * 3
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    folder = tmp_path / "tiny-gpt2"
    fast = GPT2TokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(folder)
    config = tiny_gpt2_config(
        vocab_size=len(fast), initializer_range=0.2, bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_e2e_recipe_end_to_end(tmp_path, gpt2_folder):
    rows = [f"name : {w} | food : {v}||{w} serves {v} food ." for w in WORDS for v in ("Thai", "French")]
    (tmp_path / "train.txt").write_text("\n".join(rows * 2) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(rows[:4]) + "\n")
    out = tmp_path / "run"
    status = main(["pst", "finetune", "--recipe", "e2e", f"model={gpt2_folder}", f"train_file={tmp_path / 'train.txt'}",
                   f"eval_file={tmp_path / 'test.txt'}", f"output_dir={out}", "training.num_epochs=6",
                   "training.warmup_steps=2", "training.lr=1e-2", "training.log_every=1", "pst.weight_rank=4",
                   "pst.mask_rank=4", "label_smooth=0.0", "generation.num_beams=2", "generation.max_new_tokens=8", "--no-progress"])  # fmt: skip
    assert status == 0
    results = json.loads((out / "pst_results.json").read_text())
    losses = results["losses"]
    assert len(losses) == 30 and statistics.fmean(losses[-5:]) < 0.7 * statistics.fmean(losses[:5])
    assert results["merged_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert set(results["final"]) >= {"bleu", "rougeL", "sparsity"} and 0.0 <= results["final"]["bleu"] <= 1.0
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4 and predictions[0]["references"] == [rows[0].split("||")[1]]
    from transformers import GPT2LMHeadModel

    merged = GPT2LMHeadModel.from_pretrained(out / "model")
    c_fc = merged.transformer.h[0].mlp.c_fc.weight
    assert type(merged.transformer.h[0].mlp.c_fc).__name__ == "Conv1D"
    assert int((c_fc == 0).sum()) == int(0.9 * c_fc.numel())


def test_reproduce_prints_our_numbers_beside_the_papers(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    result = {"kind": "glue", "task": "sst-2", "model": "bert-base-uncased", "trainable_fraction": 0.026,
              "merged_sparsity": 0.9, "final": {"step": 10, "sparsity": 0.9, "accuracy": 0.875, "score": 0.875},
              "best_in_final_window": {"step": 8, "sparsity": 0.9, "accuracy": 0.9, "score": 0.9}}  # fmt: skip
    (run / "pst_results.json").write_text(json.dumps(result))
    assert main(["pst", "reproduce", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| glue-bert | sst-2 | accuracy | 87.50 | 90.00 | n/a | 2.60% | 90.0% |" in out
    assert main(["pst", "reproduce", str(tmp_path)]) == 2  # not a run folder
