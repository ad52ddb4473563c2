"""StructBERT pre-training data: MLM + trigram shuffle (WSO) + 3-way sentence order (SSO), and its shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alicemind.structbert.pretraining_data import (
    IGNORE_INDEX,
    SSO_NEXT,
    SSO_PREVIOUS,
    SSO_RANDOM,
    _greedy_fill,
    _truncate_pair,
    build_pretraining_instances,
    load_pretraining_dataset,
    mask_and_shuffle,
    pretraining_collator,
    write_pretraining_shards,
)

CLS, SEP, MASK, PAD = 1, 2, 3, 0
VOCAB = 2000
SPECIAL_IDS = dict(cls_id=CLS, sep_id=SEP, mask_id=MASK, pad_id=PAD, vocab_size=VOCAB)


def _corpus(n_docs: int, seed: int = 0, sentences=(3, 12), lengths=(4, 25)) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        [rng.integers(10, VOCAB, size=int(rng.integers(*lengths))) for _ in range(int(rng.integers(*sentences)))]
        for _ in range(n_docs)
    ]


def _segments(inst):
    ids, types = np.asarray(inst["input_ids"]), np.asarray(inst["token_type_ids"])
    first_sep = int(np.argmax(types == 1)) - 1
    return ids, types, first_sep


def test_instance_layout_and_prediction_budget():
    instances = build_pretraining_instances(
        _corpus(150), max_seq_length=64, max_predictions_per_seq=12, wso_trigram_prob=0.3, rng=1, **SPECIAL_IDS
    )
    assert len(instances) > 300
    for inst in instances:
        ids, types, first_sep = _segments(inst)
        labels = inst["mlm_labels"]
        assert len(ids) <= 64 and len(ids) == len(types) == len(labels)
        assert ids[0] == CLS and ids[first_sep] == SEP and ids[-1] == SEP and 1 < first_sep < len(ids) - 2
        assert (types[: first_sep + 1] == 0).all() and (types[first_sep + 1 :] == 1).all()
        assert (labels[[0, first_sep, len(ids) - 1]] == IGNORE_INDEX).all()  # specials are never predicted
        assert 1 <= (labels != IGNORE_INDEX).sum() <= 12
        assert inst["sentence_order_label"] in (SSO_RANDOM, SSO_NEXT, SSO_PREVIOUS)


def _contains(stream: np.ndarray, part: np.ndarray) -> bool:
    if len(part) > len(stream):
        return False
    return bool((np.lib.stride_tricks.sliding_window_view(stream, len(part)) == part).all(axis=1).any())


def test_sentence_order_classes_are_a_third_each_and_mean_what_they_say():
    # Document d uses only ids 10 + 100*d ... 10 + 100*d + 99, so every token names its document; short documents
    # fit into one instance, so A and B can be traced back to where they came from.
    rng = np.random.default_rng(3)
    docs = [
        [10 + 100 * d + rng.integers(0, 100, size=int(rng.integers(2, 8))) for _ in range(int(rng.integers(1, 5)))]
        for d in range(1000)
    ]
    instances = build_pretraining_instances(
        docs, max_seq_length=128, max_predictions_per_seq=20, masked_lm_prob=0.0, wso_trigram_prob=0.0,
        short_seq_prob=0.0, dupe_factor=3, rng=7, **{**SPECIAL_IDS, "vocab_size": 10 + 100 * 1000},
    )  # fmt: skip
    n = len(instances)
    assert n >= 3000
    labels = np.array([inst["sentence_order_label"] for inst in instances])
    bound = 5 * np.sqrt((1 / 3) * (2 / 3) / n)  # five binomial standard deviations
    for label in (SSO_RANDOM, SSO_NEXT, SSO_PREVIOUS):
        assert abs(np.mean(labels == label) - 1 / 3) < bound

    streams = [np.concatenate(doc) for doc in docs]
    for inst in instances:
        ids, _, first_sep = _segments(inst)
        a, b = ids[1:first_sep], ids[first_sep + 1 : -1]
        (doc_a,), (doc_b,) = np.unique((a - 10) // 100), np.unique((b - 10) // 100)  # each from one document
        if inst["sentence_order_label"] == SSO_RANDOM:
            assert doc_a != doc_b
        else:  # B directly follows A in its document (or precedes it, for a swapped pair)
            whole = np.concatenate([a, b] if inst["sentence_order_label"] == SSO_NEXT else [b, a])
            assert doc_a == doc_b and _contains(streams[doc_a], whole)


def _run_mask(tokens, special, seed, **kw):
    return mask_and_shuffle(
        np.asarray(tokens), np.asarray(special), rng=np.random.default_rng(seed), mask_id=MASK,
        random_ids=np.arange(10, VOCAB), **kw,
    )  # fmt: skip


def test_trigrams_are_shuffled_only_over_unmasked_positions_and_labelled_with_originals():
    rng = np.random.default_rng(0)
    n_wso = 0
    for seed in range(300):
        tokens = np.concatenate([[CLS], rng.integers(10, 40, size=60), [SEP], rng.integers(10, 40, size=40), [SEP]])
        special = np.isin(tokens, [CLS, SEP])
        out = _run_mask(tokens, special, seed, max_predictions=40, masked_lm_prob=0.15, wso_trigram_prob=0.3)
        mlm = set(out.mlm_positions.tolist())
        covered = set()
        for start in out.wso_starts:
            window = list(range(start, start + 3))
            assert not special[window].any() and not mlm & set(window) and not covered & set(window)
            covered |= set(window)
            before, after = tokens[window], out.input_ids[window]
            assert sorted(before) == sorted(after) and (before != after).any()  # a real reordering
            moved = before != after
            assert (out.labels[window][moved] == before[moved]).all()  # labels are the original tokens
            assert (out.labels[window][~moved] == IGNORE_INDEX).all()
            n_wso += 1
        # Outside MLM and WSO nothing changed and nothing is labelled.
        untouched = np.setdiff1d(np.arange(len(tokens)), list(mlm | covered))
        assert (out.input_ids[untouched] == tokens[untouched]).all()
        assert (out.labels[untouched] == IGNORE_INDEX).all()
        assert (out.labels[list(mlm)] == tokens[list(mlm)]).all()
    assert n_wso > 300


def test_mlm_replacement_rates():
    tokens = np.concatenate([[CLS], np.arange(10, 1010), [SEP]])
    special = np.isin(tokens, [CLS, SEP])
    masked = kept = randomized = 0
    for seed in range(40):
        out = _run_mask(tokens, special, seed, max_predictions=1000, wso_trigram_prob=0.0)
        assert len(out.mlm_positions) == 150  # round(1000 * 0.15)
        new = out.input_ids[out.mlm_positions]
        masked += (new == MASK).sum()
        kept += (new == tokens[out.mlm_positions]).sum()
        randomized += ((new != MASK) & (new != tokens[out.mlm_positions])).sum()
    total = 40 * 150
    assert abs(masked / total - 0.8) < 0.03 and abs(kept / total - 0.1) < 0.02 and abs(randomized / total - 0.1) < 0.02


def test_trigrams_that_cannot_change_are_skipped():
    tokens = np.array([CLS] + [7] * 30 + [SEP])
    special = np.isin(tokens, [CLS, SEP])
    out = _run_mask(tokens, special, 0, max_predictions=30, masked_lm_prob=0.0, wso_trigram_prob=1.0)
    assert len(out.wso_starts) == 0 and (out.labels == IGNORE_INDEX).all()
    pairs = np.array([CLS] + [7, 7, 8] * 10 + [SEP])  # every trigram holds two equal tokens: 2 positions move
    out = _run_mask(pairs, np.isin(pairs, [CLS, SEP]), 0, max_predictions=30, masked_lm_prob=0.0, wso_trigram_prob=1.0)
    assert len(out.wso_starts) > 0
    assert (out.labels != IGNORE_INDEX).sum() == 2 * len(out.wso_starts)
    assert (out.input_ids != pairs).sum() == 2 * len(out.wso_starts)


def test_prediction_budget_is_shared_by_mlm_and_wso():
    tokens = np.concatenate([[CLS], np.arange(10, 110), [SEP]])
    special = np.isin(tokens, [CLS, SEP])
    for seed in range(50):
        out = _run_mask(tokens, special, seed, max_predictions=20, masked_lm_prob=0.15, wso_trigram_prob=1.0)
        assert len(out.mlm_positions) == 15 and (out.labels != IGNORE_INDEX).sum() <= 20
        full = _run_mask(tokens, special, seed, max_predictions=15, masked_lm_prob=0.15, wso_trigram_prob=1.0)
        assert len(full.wso_starts) == 0  # MLM used the whole budget
    ample = _run_mask(tokens, special, 0, max_predictions=200, masked_lm_prob=0.15, wso_trigram_prob=1.0)
    assert len(ample.wso_starts) >= 12  # every disjoint unmasked trigram of the tiling is shuffled at prob 1


def test_deterministic_under_a_seed():
    docs = _corpus(40, seed=5)
    kwargs = dict(max_seq_length=48, max_predictions_per_seq=10, wso_trigram_prob=0.2, **SPECIAL_IDS)

    def flat(instances):
        return [(tuple(i["input_ids"]), tuple(i["mlm_labels"]), i["sentence_order_label"]) for i in instances]

    first = flat(build_pretraining_instances(docs, rng=11, **kwargs))
    assert first == flat(build_pretraining_instances(docs, rng=11, **kwargs))
    assert first != flat(build_pretraining_instances(docs, rng=12, **kwargs))


def test_whole_word_masking_respects_groups():
    continuation = np.zeros(VOCAB, dtype=bool)
    continuation[1000:] = True  # ids >= 1000 play WordPiece "##" pieces
    rng = np.random.default_rng(2)

    def sentence():  # words of 1-3 pieces: a head id < 1000 followed by continuation ids
        words = [np.concatenate([[rng.integers(10, 1000)], rng.integers(1000, VOCAB, size=rng.integers(0, 3))])
                 for _ in range(rng.integers(3, 10))]  # fmt: skip
        return np.concatenate(words)

    docs = [[sentence() for _ in range(5)] for _ in range(60)]
    instances = build_pretraining_instances(
        docs, max_seq_length=64, max_predictions_per_seq=14, wso_trigram_prob=0.0, whole_word_groups=continuation,
        rng=4, **SPECIAL_IDS,
    )  # fmt: skip
    words_masked = 0
    for inst in instances:
        ids, labels = inst["input_ids"], inst["mlm_labels"]
        original = np.where(labels != IGNORE_INDEX, labels, ids)
        is_special = np.isin(ids, [CLS, SEP]) & (labels == IGNORE_INDEX)
        starts = ~(continuation[original] & ~np.roll(is_special, 1)) | is_special
        word = np.cumsum(starts)
        for w in np.unique(word[labels != IGNORE_INDEX]):
            assert (labels[word == w] != IGNORE_INDEX).all(), "a word was masked only in part"
            words_masked += 1
        assert (labels != IGNORE_INDEX).sum() <= 14
    assert words_masked > len(instances)


def test_whole_word_budget_skips_words_that_do_not_fit_like_bert():
    rng = np.random.default_rng(0)
    for _ in range(300):
        sizes = rng.integers(1, 5, size=int(rng.integers(1, 40)))
        order, budget = rng.permutation(len(sizes)), int(rng.integers(1, 30))
        expected, total = [], 0
        for g in order:  # the reference: BERT's sequential loop
            if total + sizes[g] <= budget:
                expected.append(g)
                total += sizes[g]
        assert sorted(_greedy_fill(order, sizes, budget).tolist()) == sorted(expected)


def test_pair_truncation_matches_berts_one_token_at_a_time_loop():
    rng = np.random.default_rng(1)
    for _ in range(300):
        la, lb, limit = (int(x) for x in rng.integers(1, 40, size=3))
        a, b = np.arange(la), np.arange(100, 100 + lb)
        ref_a, ref_b = la, lb
        while ref_a + ref_b > limit:  # trim the longer side, B on ties
            if ref_a > ref_b:
                ref_a -= 1
            else:
                ref_b -= 1
        ta, tb = _truncate_pair(a, b, limit, rng)
        assert (len(ta), len(tb)) == (ref_a, ref_b)
        # what is left is a contiguous piece of each side
        assert (np.diff(ta) == 1).all() and (np.diff(tb) == 1).all()


def test_text_input_and_errors():
    vocab = {w: i + 10 for i, w in enumerate("the a cat dog sat ran on mat home fast".split())}
    docs = [["the cat sat", "on a mat"], ["a dog ran", "home fast"], ["the dog sat"]]
    instances = build_pretraining_instances(
        docs, lambda s: [vocab[w] for w in s.split()], max_seq_length=16, max_predictions_per_seq=4, rng=0,
        **SPECIAL_IDS,
    )  # fmt: skip
    assert instances and all(
        set(i["input_ids"]) <= {*vocab.values(), CLS, SEP, MASK, *range(10, VOCAB)} for i in instances
    )
    with pytest.raises(ValueError, match="pass tokenizer_fn"):
        build_pretraining_instances(docs, max_seq_length=16, max_predictions_per_seq=4, **SPECIAL_IDS)
    with pytest.raises(ValueError, match="need at least 2 non-empty documents"):
        build_pretraining_instances([[[11, 12, 13]]], max_seq_length=16, max_predictions_per_seq=4, **SPECIAL_IDS)
    with pytest.raises(ValueError, match=r"token id 5000 outside \[0, vocab_size=2000\)"):
        build_pretraining_instances([[[5000]], [[11]]], max_seq_length=16, max_predictions_per_seq=4, **SPECIAL_IDS)
    with pytest.raises(ValueError, match="sso_classes must be 2"):
        build_pretraining_instances(docs, max_seq_length=16, max_predictions_per_seq=4, sso_classes=4, **SPECIAL_IDS)


def test_two_class_mode_is_next_sentence_prediction():
    instances = build_pretraining_instances(
        _corpus(200, seed=8), max_seq_length=64, max_predictions_per_seq=10, sso_classes=2, rng=0, **SPECIAL_IDS
    )
    labels = np.array([i["sentence_order_label"] for i in instances])
    assert set(labels.tolist()) == {SSO_RANDOM, SSO_NEXT} and abs(labels.mean() - 0.5) < 0.1


def test_shards_round_trip_and_collate(tmp_path):
    instances = build_pretraining_instances(
        _corpus(30, seed=9), max_seq_length=40, max_predictions_per_seq=8, rng=3, **SPECIAL_IDS
    )
    out = write_pretraining_shards(instances, tmp_path / "shards", vocab_size=VOCAB, shard_size=17)
    dataset = load_pretraining_dataset(out)
    assert len(dataset) == len(instances) and dataset.fields["input_ids"]["dtype"] == "uint16"
    for k in (0, 16, 17, len(instances) - 1):
        for name in ("input_ids", "token_type_ids", "mlm_labels"):
            assert dataset[k][name].tolist() == instances[k][name].tolist()
        assert dataset[k]["sentence_order_label"] == instances[k]["sentence_order_label"]
    batch = pretraining_collator(PAD)([dataset[k] for k in range(5)])
    lengths = [len(instances[k]["input_ids"]) for k in range(5)]
    assert batch["input_ids"].shape == (5, -(-max(lengths) // 8) * 8)
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["mlm_labels"][batch["attention_mask"] == 0].eq(IGNORE_INDEX).all()
    assert batch["sentence_order_label"].dtype == torch.int64 and batch["sentence_order_label"].shape == (5,)
    (tmp_path / "other").mkdir()
    from alicemind.core.data import ShardWriter

    with ShardWriter(tmp_path / "other") as w:
        w.add({"input_ids": [1, 2]})
    with pytest.raises(ValueError, match=r"missing fields \['token_type_ids', 'mlm_labels', 'sentence_order_label'\]"):
        load_pretraining_dataset(tmp_path / "other")
