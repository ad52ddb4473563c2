"""A tiny random encoder-decoder implementing EncoderDecoderLM, plain-loop references, and the toy's cache checks.

The other test_generation_* modules load this file by path (pytest's importlib mode puts no test folder on
sys.path); its own tests prove the toy's KV cache matches full recomputation, which the engine tests rely on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alicemind.core.generation import EncoderDecoderLM, length_penalty


@dataclass
class ToyCache:
    self_k: list[Tensor]  # per layer [B, heads, capacity, head_dim]
    self_v: list[Tensor]
    cross_k: list[Tensor]  # per layer [B, heads, S, head_dim]
    cross_v: list[Tensor]
    cross_mask: Tensor  # [B, 1, 1, S] bool, True = real source token
    length: int = 0


class ToyDecoderLayer(nn.Module):
    """Pre-LN decoder layer: causal self-attention, cross-attention, feed-forward."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_self, self.ln_cross, self.ln_ff = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.self_out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.q_cross, self.kv_cross, self.cross_out = (
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, 2 * hidden),
            nn.Linear(hidden, hidden),
        )
        self.ff = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))

    def split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def merge(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2).flatten(2)

    def cross_kv(self, encoder_hidden: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv_cross(encoder_hidden).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x: Tensor, keys, values, self_mask: Tensor, cross: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """``keys``/``values`` turn this layer's new (k, v) into the full self-attention keys/values."""
        q, k, v = (self.split(t) for t in self.qkv(self.ln_self(x)).chunk(3, dim=-1))
        attn = F.scaled_dot_product_attention(q, keys(k), values(v), attn_mask=self_mask)
        x = x + self.self_out(self.merge(attn))
        cross_k, cross_v, cross_mask = cross
        q = self.split(self.q_cross(self.ln_cross(x)))
        x = x + self.cross_out(self.merge(F.scaled_dot_product_attention(q, cross_k, cross_v, attn_mask=cross_mask)))
        return x + self.ff(self.ln_ff(x))


class ToySeq2Seq(nn.Module):
    """Random encoder-decoder (1 encoder layer, ``layers`` decoder layers) with its own KV cache."""

    def __init__(self, vocab: int = 12, hidden: int = 16, heads: int = 2, layers: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed, self.pos = nn.Embedding(vocab, hidden), nn.Embedding(64, hidden)
        self.encoder = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, batch_first=True)
        self.layers = nn.ModuleList(ToyDecoderLayer(hidden, heads) for _ in range(layers))
        self.final_ln, self.lm_head = nn.LayerNorm(hidden), nn.Linear(hidden, vocab)
        with torch.no_grad():
            self.lm_head.weight.mul_(4.0)  # peakier distributions: fewer near-ties between tokens
        self.eval()
        self.decode_batch_sizes: list[int] = []

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.embed(input_ids) + self.pos(torch.arange(input_ids.shape[1]))
        # A boolean attn_mask (True = may attend) keeps the plain math path: no nested-tensor fast path.
        keep = attention_mask.bool()[:, None, :].expand(-1, input_ids.shape[1], -1)
        return self.encoder(x, src_mask=keep.repeat_interleave(self.encoder.self_attn.num_heads, 0).logical_not())

    def init_decoder_cache(self, encoder_hidden: Tensor, encoder_mask: Tensor, max_length: int) -> ToyCache:
        batch = encoder_hidden.shape[0]
        layer0 = self.layers[0]
        head_dim = encoder_hidden.shape[-1] // layer0.heads
        empty = [encoder_hidden.new_zeros(batch, layer0.heads, max_length, head_dim) for _ in self.layers]
        cross = [layer.cross_kv(encoder_hidden) for layer in self.layers]
        return ToyCache(
            self_k=empty,
            self_v=[t.clone() for t in empty],
            cross_k=[k for k, _ in cross],
            cross_v=[v for _, v in cross],
            cross_mask=encoder_mask.bool()[:, None, None, :],
        )

    def decode_step(self, decoder_input_ids: Tensor, cache: ToyCache) -> Tensor:
        self.decode_batch_sizes.append(decoder_input_ids.shape[0])
        start, new = cache.length, decoder_input_ids.shape[1]
        end = start + new
        x = self.embed(decoder_input_ids) + self.pos(torch.arange(start, end))
        causal = torch.arange(end)[None, :] <= torch.arange(start, end)[:, None]
        for i, layer in enumerate(self.layers):

            def keys(k: Tensor, i: int = i) -> Tensor:
                cache.self_k[i][:, :, start:end] = k
                return cache.self_k[i][:, :, :end]

            def values(v: Tensor, i: int = i) -> Tensor:
                cache.self_v[i][:, :, start:end] = v
                return cache.self_v[i][:, :, :end]

            x = layer(x, keys, values, causal, (cache.cross_k[i], cache.cross_v[i], cache.cross_mask))
        cache.length = end
        return self.lm_head(self.final_ln(x))

    def reorder_cache(self, cache: ToyCache, index: Tensor) -> ToyCache:
        pick = lambda tensors: [t.index_select(0, index) for t in tensors]  # noqa: E731
        return ToyCache(
            pick(cache.self_k),
            pick(cache.self_v),
            pick(cache.cross_k),
            pick(cache.cross_v),
            cache.cross_mask.index_select(0, index),
            cache.length,
        )

    @torch.no_grad()
    def full_logits(self, input_ids: Tensor, attention_mask: Tensor, decoder_ids: Tensor) -> Tensor:
        """Logits of every decoder position, recomputed from scratch: no cache at all."""
        encoded = self.encode(input_ids, attention_mask)
        length = decoder_ids.shape[1]
        x = self.embed(decoder_ids) + self.pos(torch.arange(length))
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        mask = attention_mask.bool()[:, None, None, :]
        for layer in self.layers:
            cross_k, cross_v = layer.cross_kv(encoded)
            x = layer(x, lambda k: k, lambda v: v, causal, (cross_k, cross_v, mask))
        return self.lm_head(self.final_ln(x))


def naive_greedy(model: ToySeq2Seq, src: Tensor, prompt: list[int], max_new: int, eos: int | None) -> list[int]:
    """Argmax over a full recomputation at every step, one source row ``[S]`` at a time."""
    tokens = list(prompt)
    mask = torch.ones(1, src.numel(), dtype=torch.long)
    for _ in range(max_new):
        tokens.append(int(model.full_logits(src[None], mask, torch.tensor([tokens]))[0, -1].argmax()))
        if tokens[-1] == eos:
            break
    return tokens


def banned_by_ngram(tokens: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram of ``tokens``: a plain loop over all windows."""
    if n <= 0 or len(tokens) < n:
        return set()
    prefix = tuple(tokens[len(tokens) - n + 1 :])
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tuple(tokens[i : i + n - 1]) == prefix}


def reference_beam(model: ToySeq2Seq, src: Tensor, start: int, config, max_new: int) -> list[tuple[float, list[int]]]:
    """Beam search with plain lists: every live hypothesis is re-run from scratch and expanded over the whole
    vocabulary; all candidates are sorted; EOS among the first ``num_beams`` finishes, the first ``num_beams``
    non-EOS survive. Stopping follows ``GenerationConfig.early_stopping``, or with ``beam_stopping="top_beam"``
    the first step whose top candidate is EOS. Returns (score, tokens) best first."""
    beams, eos = config.num_beams, config.eos_token_id
    mask = torch.ones(1, src.numel(), dtype=torch.long)

    def lp(n: int) -> float:
        return float(length_penalty(n, config.length_penalty, config.length_penalty_style))

    live: list[tuple[float, list[int]]] = [(0.0, [start])]
    finished: list[tuple[float, list[int]]] = []
    for step in range(max_new):
        candidates = []
        for total, tokens in live:
            logp = torch.log_softmax(model.full_logits(src[None], mask, torch.tensor([tokens]))[0, -1], dim=-1)
            banned = banned_by_ngram(tokens, config.no_repeat_ngram_size)
            if step < config.min_length:
                banned.add(eos)
            for token in range(logp.numel()):
                score = -math.inf if token in banned else total + float(logp[token])
                candidates.append((score, tokens + [token]))
        candidates.sort(key=lambda c: -c[0])
        finished += [(s / lp(step + 1), t) for s, t in candidates[:beams] if t[-1] == eos and s > -math.inf]
        live = [c for c in candidates if c[1][-1] != eos][:beams]
        if step == max_new - 1:
            finished += [(s / lp(step + 1), t) for s, t in live if s > -math.inf]
        finished = sorted(finished, key=lambda c: -c[0])[:beams]
        if getattr(config, "beam_stopping", "num_beams") == "top_beam":
            if candidates[0][1][-1] == eos and candidates[0][0] > -math.inf:
                break
        elif len(finished) == beams:
            if config.early_stopping:
                break
            bound = max(s for s, _ in live) / max(lp(step + 2), lp(max_new))
            if bound <= finished[-1][0]:
                break
    return finished


def padded_batch(sources: list[list[int]], pad: int = 0) -> tuple[Tensor, Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for sources of different lengths."""
    width = max(len(s) for s in sources)
    ids = torch.full((len(sources), width), pad, dtype=torch.long)
    mask = torch.zeros(len(sources), width, dtype=torch.long)
    for row, source in enumerate(sources):
        ids[row, : len(source)] = torch.tensor(source)
        mask[row, : len(source)] = 1
    return ids, mask


# ---- the toy's own checks ------------------------------------------------------------------------------------


def test_toy_implements_protocol() -> None:
    assert isinstance(ToySeq2Seq(), EncoderDecoderLM)


@torch.no_grad()
def test_incremental_decoding_matches_full_recomputation() -> None:
    model = ToySeq2Seq(seed=1)
    src, mask = padded_batch([[3, 4, 5, 6, 7], [8, 9], [4, 4, 2]])
    decoder = torch.randint(1, 12, (3, 8), generator=torch.Generator().manual_seed(0))
    cache = model.init_decoder_cache(model.encode(src, mask), mask, max_length=8)
    steps = [model.decode_step(decoder[:, :3], cache)]  # a 3-token prompt, then one token at a time
    steps += [model.decode_step(decoder[:, t : t + 1], cache) for t in range(3, 8)]
    incremental = torch.cat(steps, dim=1)
    full = model.full_logits(src, mask, decoder)
    assert (incremental - full).abs().max() < 1e-5


@torch.no_grad()
def test_reordered_cache_continues_the_selected_rows() -> None:
    model = ToySeq2Seq(seed=2)
    src, mask = padded_batch([[3, 4, 5, 6], [8, 9], [5, 7, 2]])
    decoder = torch.randint(1, 12, (3, 5), generator=torch.Generator().manual_seed(1))
    cache = model.init_decoder_cache(model.encode(src, mask), mask, max_length=6)
    model.decode_step(decoder[:, :3], cache)
    index = torch.tensor([2, 0, 0, 1])  # permute, repeat and keep all rows: what beams and sampling do
    cache = model.reorder_cache(cache, index)
    tail = torch.cat([model.decode_step(decoder[index, t : t + 1], cache) for t in (3, 4)], dim=1)
    full = model.full_logits(src[index], mask[index], decoder[index])[:, 3:]
    assert (tail - full).abs().max() < 1e-5
