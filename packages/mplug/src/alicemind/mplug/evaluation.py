"""Task metrics as the release reports them: CIDEr-D and BLEU-4 (the COCO caption definitions, pure Python),
VQA accuracy, retrieval R@1/5/10 both ways (ITC top-k re-ranked by ITM), grounding accuracy at IoU 0.5."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from alicemind.mplug.grounding import box_iou


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]], *, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D: the mean of :func:`cider_d_scores`."""
    scores = cider_d_scores(candidates, references, sigma=sigma)
    return sum(scores) / len(scores)


def cider_d_scores(candidates: Sequence[str], references: Sequence[Sequence[str]], *, sigma: float = 6.0) -> list:
    """Per-candidate CIDEr-D of pycocoevalcap's ``CiderScorer`` (n 1..4, idf from the references, clipped tf, length penalty
    ``exp(-d^2 / 2 sigma^2)``, x10), on whitespace-tokenised lower-case text."""
    cands = [c.lower().split() for c in candidates]
    refs = [[r.lower().split() for r in rs] for rs in references]
    df: Counter = Counter()
    for rs in refs:
        df.update({g for r in rs for n in range(1, 5) for g in _ngrams(r, n)})
    log_n = math.log(float(len(refs)))

    def vec(words):
        out = [{} for _ in range(4)]
        norms = [0.0] * 4
        for n in range(1, 5):
            for g, tf in _ngrams(words, n).items():
                out[n - 1][g] = tf * (log_n - math.log(max(1.0, df[g])))
                norms[n - 1] += out[n - 1][g] ** 2
        return out, [math.sqrt(x) for x in norms], len(words)

    scores = []
    for cand, rs in zip(cands, refs, strict=True):
        vc, nc, lc = vec(cand)
        total = [0.0] * 4
        for r in rs:
            vr, nr, lr = vec(r)
            for n in range(4):
                dot = sum(min(v, vr[n][g]) * vr[n][g] for g, v in vc[n].items() if g in vr[n])
                if nc[n] and nr[n]:
                    total[n] += dot / (nc[n] * nr[n]) * math.exp(-((lc - lr) ** 2) / (2 * sigma**2))
        scores.append(sum(t / len(rs) for t in total) / 4 * 10.0)
    return scores


def bleu4(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 with the closest reference length for the brevity penalty (pycocoevalcap's ``Bleu(4)``)."""
    matches, totals = [0] * 4, [0] * 4
    cand_len = ref_len = 0
    for cand, rs in zip(candidates, references, strict=True):
        c = cand.lower().split()
        r_words = [r.lower().split() for r in rs]
        cand_len += len(c)
        ref_len += min((abs(len(r) - len(c)), len(r)) for r in r_words)[1]
        for n in range(1, 5):
            grams = _ngrams(c, n)
            best: Counter = Counter()
            for r in r_words:
                best |= _ngrams(r, n)
            matches[n - 1] += sum(min(v, best[g]) for g, v in grams.items())
            totals[n - 1] += max(len(c) - n + 1, 0)
    tiny = 1e-9
    log_p = sum(math.log((m + tiny) / (t + tiny)) for m, t in zip(matches, totals, strict=True)) / 4
    brevity = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / max(cand_len, 1))
    return brevity * math.exp(log_p)


def vqa_accuracy(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    """VQA accuracy: ``min(#humans who gave the answer / 3, 1)`` averaged over questions."""
    scores = [min(sum(a == p for a in given) / 3.0, 1.0) for p, given in zip(predictions, answers, strict=True)]
    return sum(scores) / len(scores)


def recall_at_k(scores: torch.Tensor, positives: list[set[int]], ks=(1, 5, 10)) -> dict[int, float]:
    """``scores`` ``[queries, items]``; the share of queries with a positive among their top k."""
    order = scores.argsort(1, descending=True)
    out = {}
    for k in ks:
        top = order[:, :k].tolist()
        out[k] = sum(bool(set(t) & pos) for t, pos in zip(top, positives, strict=True)) / len(positives)
    return out


@torch.no_grad()
def retrieval_scores(model, pixel_values, input_ids, attention_mask, *, k_test: int = 256) -> tuple:
    """``(i2t, t2i)`` score matrices: ITC similarity, with each query's top ``k_test`` re-scored by the ITM logit
    (the release's evaluation; others stay at -100)."""
    image, image_mask = model.encode_image(pixel_values)
    text = model.encode_text(input_ids, attention_mask)
    sim = model.image_features(image) @ model.text_features(text).T
    i2t = torch.full_like(sim, -100.0)
    t2i = torch.full_like(sim.T, -100.0)
    k_i, k_t = min(k_test, sim.shape[1]), min(k_test, sim.shape[0])
    for i in range(sim.shape[0]):
        top = sim[i].topk(k_i).indices
        logits = model.itm_logits(image[i : i + 1].expand(k_i, -1, -1), image_mask[:k_i].new_ones(k_i, image.shape[1]),
                                  text[top], attention_mask[top])  # fmt: skip
        i2t[i, top] = logits[:, 1] + sim[i, top]
    for t in range(sim.shape[1]):
        top = sim[:, t].topk(k_t).indices
        logits = model.itm_logits(image[top], image_mask[top], text[t : t + 1].expand(k_t, -1, -1),
                                  attention_mask[t : t + 1].expand(k_t, -1))  # fmt: skip
        t2i[t, top] = logits[:, 1] + sim[top, t]
    return i2t, t2i


def grounding_accuracy(predicted: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """Share of ``[N, 4]`` predicted boxes with IoU >= ``threshold`` against the targets."""
    return float((box_iou(predicted, target) >= threshold).float().mean())
