"""Metrics against hand-computed values (and scipy / scikit-learn / seqeval when they happen to be installed)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from alicemind.core.metrics import (
    accuracy,
    corpus_bleu,
    exact_match,
    f1,
    get_entities,
    glue_metrics,
    matthews_corrcoef,
    ngram_bleu,
    normalize_answer,
    pearson,
    rankdata,
    rouge,
    span_f1,
    spearman,
    squad_f1,
    squad_metrics,
)

P, Y = [1, 0, 1, 1], [1, 1, 1, 0]


def test_accuracy_f1():
    assert accuracy(P, Y) == 0.5
    assert f1(P, Y) == pytest.approx(2 / 3)  # tp=2 fp=1 fn=1
    assert f1(P, Y, pos_label=0) == 0.0
    assert f1(P, Y, average="macro") == pytest.approx(1 / 3)
    assert f1(P, Y, average="micro") == 0.5
    assert f1([0, 1, 2, 2], [0, 2, 2, 1], average="macro") == pytest.approx((1 + 0 + 0.5) / 3)
    with pytest.raises(ValueError, match=r"differ in shape: \(2,\) vs \(3,\)"):
        accuracy([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="unknown average 'weighted'"):
        f1(P, Y, average="weighted")


def test_matthews_binary_and_multiclass():
    assert matthews_corrcoef(P, Y) == pytest.approx(-1 / 3)  # (tp*tn - fp*fn)/sqrt(3*3*1*1)
    # Confusion [[2,0,0],[1,0,1],[0,1,1]]: (3*6 - 12) / sqrt((36-14)*(36-12))
    assert matthews_corrcoef([0, 2, 1, 0, 0, 2], [0, 1, 2, 0, 1, 2]) == pytest.approx(6 / math.sqrt(22 * 24))
    assert matthews_corrcoef([1, 1, 1], [0, 1, 0]) == 0.0  # constant predictions: undefined -> 0
    assert matthews_corrcoef(Y, Y) == pytest.approx(1.0)


def test_correlations_with_ties():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 9]) == pytest.approx(11.5 / math.sqrt(5 * 26.75))
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))


def test_against_scipy_and_sklearn():
    # Test dependencies (alicemind-core[test]): a missing one fails here rather than skipping silently.
    from scipy import stats
    from sklearn import metrics

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 50), rng.integers(0, 5, 50)  # many ties
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert rankdata(x).tolist() == stats.rankdata(x).tolist()
    assert matthews_corrcoef(x, y) == pytest.approx(metrics.matthews_corrcoef(y, x))
    assert f1(x, y, average="macro") == pytest.approx(metrics.f1_score(y, x, average="macro"))


def test_glue_metrics_uses_the_task_metrics():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])  # argmax = P
    result = glue_metrics("mrpc", logits, Y)
    assert result == pytest.approx({"accuracy": 0.5, "f1": 2 / 3, "score": (0.5 + 2 / 3) / 2})
    assert glue_metrics("cola", P, Y) == pytest.approx({"mcc": -1 / 3, "score": -1 / 3})
    sts = glue_metrics("sts-b", [[1.0], [2.0], [2.0], [3.0]], [1.0, 3.0, 2.0, 4.0])
    assert sts["spearman"] == pytest.approx(4.5 / math.sqrt(22.5)) and set(sts) == {"pearson", "spearman", "score"}


def test_entities_follow_conlleval_rules():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-PER"]
    assert get_entities(tags) == [("PER", 0, 1), ("LOC", 3, 4), ("PER", 5, 5)]
    assert get_entities(["I-ORG", "I-ORG", "O"]) == [("ORG", 0, 1)]  # a stray I- opens an entity
    assert get_entities(["B-PER", "B-PER"]) == [("PER", 0, 0), ("PER", 1, 1)]
    assert get_entities(["S-PER", "B-LOC", "E-LOC", "E-LOC"]) == [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]


def test_span_f1():
    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["B-MISC", "O"]]
    hyps = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "O"]]
    # 3 true entities, 2 predicted, 1 correct (boundaries and type must both match)
    assert span_f1(refs, hyps) == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4})
    assert span_f1([["B-X", "I-X"]], [["B-X", "O"]])["f1"] == 0.0
    with pytest.raises(ValueError, match="sequence 0: 2 reference tags but 1 predicted"):
        span_f1([["O", "O"]], [["O"]])


def test_span_f1_against_seqeval():
    from seqeval import metrics as seqeval  # a test dependency (alicemind-core[test]): fail, do not skip

    refs = [["B-PER", "I-PER", "O", "I-LOC", "E-LOC"], ["S-MISC", "B-ORG", "B-ORG"]]
    hyps = [["B-PER", "I-PER", "B-LOC", "I-LOC", "I-LOC"], ["S-MISC", "I-ORG", "B-ORG"]]
    assert span_f1(refs, hyps)["f1"] == pytest.approx(seqeval.f1_score(refs, hyps))


def test_squad_scores():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert exact_match("the cat sat", ["Cat sat."]) == 1.0
    assert squad_f1("cat sat on mat", ["the cat sat", "a dog"]) == pytest.approx(2 / 3)  # P=1/2, R=1
    assert squad_f1("", [""]) == 1.0 and squad_f1("x", [""]) == 0.0
    scores = squad_metrics({"q1": "Paris", "q2": "in 1990"}, {"q1": ["paris"], "q2": ["1990", "1991"]})
    assert scores == pytest.approx({"exact_match": 0.5, "f1": (1 + 2 / 3) / 2})
    with pytest.raises(ValueError, match="1 questions have no prediction"):
        squad_metrics({}, {"q": ["a"]})


def test_ngram_bleu_by_hand():
    # hyp abcd vs ref abce: p1=3/4, p2=2/3, p3=1/2, p4=0/1, equal lengths
    scores = ngram_bleu(["abcd"], ["abce"])
    assert scores["bleu-1"] == pytest.approx(0.75)
    assert scores["bleu-2"] == pytest.approx(math.sqrt(0.75 * 2 / 3))
    assert scores["bleu-3"] == pytest.approx((0.75 * 2 / 3 * 0.5) ** (1 / 3))
    assert scores["bleu-4"] == 0.0
    # brevity penalty exp(1 - 5/3); spaces are not tokens; the closest of several references counts
    assert ngram_bleu(["a b c"], [["abcde", "abcdefgh"]], max_order=1)["bleu-1"] == pytest.approx(math.exp(-2 / 3))
    words = ngram_bleu(["the cat sat"], ["the cat sat"], tokenize="whitespace")
    assert words == pytest.approx({"bleu-1": 1.0, "bleu-2": 1.0, "bleu-3": 1.0, "bleu-4": 0.0})  # no 4-gram at all


def test_corpus_bleu_matches_the_independent_ngram_bleu():
    pytest.importorskip("sacrebleu")
    hyps = ["the cat sat on the mat today", "a quick brown fox jumps over the dog"]
    refs = ["the cat sat on a mat today", "the quick brown fox jumped over the lazy dog"]
    ours = ngram_bleu(hyps, refs, tokenize="whitespace")["bleu-4"]
    assert 0.1 < ours < 0.9
    assert corpus_bleu(hyps, refs) == pytest.approx(ours, abs=1e-12)
    assert corpus_bleu(["a b c d"], [["x y z w", "a b c d"]]) == pytest.approx(1.0)
    zh_h, zh_r = ["猫坐在垫子上了", "今天天气很好"], ["猫坐在垫子上", "今天的天气很好啊"]
    assert corpus_bleu(zh_h, zh_r, tokenize="char") == pytest.approx(ngram_bleu(zh_h, zh_r)["bleu-4"], abs=1e-12)


def test_rouge_english_and_chinese():
    pytest.importorskip("rouge_score")
    en = rouge(["the cat sat"], ["the cat sat down"])
    # rouge1: P=1, R=3/4; rouge2: P=1, R=2/3; rougeL: LCS 3
    assert en == pytest.approx({"rouge1": 6 / 7, "rouge2": 0.8, "rougeL": 6 / 7})
    zh = rouge(["猫坐着"], ["猫坐在这"], lang="zh", rouge_types=("rouge1",))
    assert zh["rouge1"] == pytest.approx(4 / 7)  # P=2/3, R=1/2
    assert rouge(["猫坐着"], ["猫坐在这"], rouge_types=("rouge1",))["rouge1"] == 0.0  # why lang="zh" exists
    best = rouge(["the cat"], [["a dog", "the cat"]], rouge_types=("rouge1",))
    assert best["rouge1"] == pytest.approx(1.0)


def test_missing_nlg_packages_give_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    with pytest.raises(ImportError, match=r"BLEU needs the sacrebleu package.*pip install 'alicemind-core\[nlg\]'"):
        corpus_bleu(["a"], ["a"])
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)
    with pytest.raises(ImportError, match=r"ROUGE needs the rouge_score.rouge_scorer package.*\[nlg\]"):
        rouge(["a"], ["a"])
    assert ngram_bleu(["ab"], ["ab"], max_order=2)["bleu-2"] == 1.0  # needs neither package
