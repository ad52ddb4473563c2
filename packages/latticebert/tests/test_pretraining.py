"""MSP data (whole segments masked within the budget, 3-way sentence labels) and a short pre-training run whose
held-out MLM and sentence-relation losses fall."""

from __future__ import annotations

import random

import pytest
from labert_testing import write_corpus

from alicemind.core.data.shards import ShardDataset
from alicemind.latticebert.pretraining import (
    PretrainingDataConfig,
    build_shards,
    create_instances,
    line_lattice,
    mask_segments,
    run_pretraining,
)


def test_spaces_split_spans_and_positions_continue(tokenizer):
    lat = line_lattice(tokenizer, "研究 生命")
    assert lat.tokens == ["研", "究", "研究", "生", "命", "生命"]
    assert lat.starts == [0, 1, 0, 2, 3, 2]
    assert lat.segments == [[0, 1, 2], [3, 4, 5]]
    # Across the space no word is matched although 究生 ... 研究生 would match without it.
    assert "研究生" not in lat.tokens


def test_segments_masked_whole_within_budget(tokenizer):
    data = PretrainingDataConfig(max_seq_length=40, dupe_factor=2)
    enc = tokenizer.join(tokenizer.lattice("研究生命起源"), tokenizer.lattice("中国人民大学"))
    rng = random.Random(3)
    for _ in range(20):
        ids, labels = mask_segments(enc.lattice, data, tokenizer.vocab_size, tokenizer.mask_token_id, rng)
        masked = {i for i, lab in enumerate(labels) if lab != -100}
        budget = min(20, max(1, round(0.15 * len(enc))))
        assert 1 <= len(masked) <= budget
        for segment in enc.segments:
            assert set(segment) <= masked or not set(segment) & masked  # all or nothing
        assert not masked & {0, enc.tokens.index("[SEP]"), len(enc) - 1}  # specials never masked
        assert all(labels[i] == enc.input_ids[i] for i in masked)


def test_instances_have_three_relations_and_fit(tmp_path, tokenizer):
    corpus = write_corpus(tmp_path / "corpus.txt")
    data = PretrainingDataConfig(max_seq_length=32, dupe_factor=3)
    count = build_shards(corpus, tokenizer, data, tmp_path / "shards", seed=0)
    dataset = ShardDataset(tmp_path / "shards")
    assert len(dataset) == count > 50
    labels = [dataset[i]["sentence_label"] for i in range(len(dataset))]
    shares = [labels.count(k) / len(labels) for k in range(3)]
    assert all(0.15 < s < 0.6 for s in shares), shares
    for i in range(len(dataset)):
        item = dataset[i]
        assert len(item["input_ids"]) <= 32
        assert int(item["lattice_ends"].max()) < 64
        assert int((item["mlm_labels"] != -100).sum()) >= 1


def test_one_chunk_documents_get_a_random_next_from_another_document(tokenizer):
    texts = ["研究生命", "北京工作", "天气很好"]
    docs = [[line_lattice(tokenizer, t)] for t in texts]
    data = PretrainingDataConfig(max_seq_length=16, dupe_factor=3, short_seq_prob=0.0)
    instances = create_instances(docs, tokenizer, data, random.Random(0))
    assert len(instances) == 9 and {it["sentence_label"] for it in instances} == {0}
    vocab = tokenizer.get_vocab()
    for it in instances:
        sep = it["input_ids"].index(vocab["[SEP]"])
        b_types = it["token_type_ids"][sep + 1 :]
        assert b_types and set(b_types) == {1}
        # A and B come from different documents: no character of A's text appears in B's original ids.
        a_ids = {i for i, lab in zip(it["input_ids"][1:sep], it["mlm_labels"][1:sep]) if lab == -100}
        b_ids = {i for i, lab in zip(it["input_ids"][sep + 1 : -1], it["mlm_labels"][sep + 1 : -1]) if lab == -100}
        assert not (a_ids & b_ids)


@pytest.mark.parametrize("seed", [0])
def test_short_pretraining_run_lowers_both_losses(tmp_path, tokenizer, seed):
    corpus = write_corpus(tmp_path / "corpus.txt", docs=32)
    held_out = write_corpus(tmp_path / "held_out.txt", docs=12, seed=1)
    tokenizer.save_pretrained(tmp_path / "tok")
    recipe = {
        "corpus": str(corpus), "eval_corpus": str(held_out), "tokenizer": str(tmp_path / "tok"),
        "scratch_config": "latticebert.test",
        "output_dir": str(tmp_path / "run"),
        "model_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        "data": {"max_seq_length": 32, "dupe_factor": 4},
        "training": {"max_steps": 250, "per_device_batch_size": 16, "lr": 3e-3, "warmup_ratio": 0.1, "log_every": 0,
                     "save_every": 0, "precision": "fp32", "seed": seed},
    }  # fmt: skip
    result = run_pretraining(recipe, progress_bar=False)
    # From ln-vocab-like MSP loss and ln 3 sentence-relation loss, both fall on the held-out instances.
    assert result.final["mlm_loss"] < 0.8 * result.initial["mlm_loss"], (result.initial, result.final)
    assert result.final["sr_loss"] < 0.9 * result.initial["sr_loss"], (result.initial, result.final)
    assert result.final["mlm_acc"] > 2 * result.initial["mlm_acc"]
    assert (result.model_dir / "model.safetensors").is_file() and (result.model_dir / "lexicon.txt").is_file()
