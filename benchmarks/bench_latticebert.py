"""LatticeBERT: lattice tokenization throughput and the encoder's forward cost against a plain BERT of the same size.

1. Tokenization (sentences/s) of synthetic Chinese sentences over a 3,000-character vocab and a 20,000-word lexicon:
   the character WordPiece alone (the floor), our lattice (trie over token ids, one-sweep cut points, segments), and
   the original's algorithm re-written here for timing only (joined-string prefix lookups from every start, and a
   graph reachability search per boundary for the cut points).
2. Forward (units/s, fp32) of LatticeBertModel vs Hugging Face BertModel (sdpa) with the same hidden size, layers,
   heads and FFN, same batch; the difference is the lattice position bias (computed once per forward) and the
   float attention mask it needs, plus the factorised embedding.

    python benchmarks/bench_latticebert.py [--threads 2] [--sentences 2000] [--batch 16 --seq 128]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def synthetic(folder: Path, n_sentences: int, seed: int = 0):
    rng = random.Random(seed)
    chars = [chr(0x4E00 + i) for i in range(3000)]
    (folder / "vocab.txt").write_text("".join(f"{t}\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]))
    words = {"".join(rng.choices(chars[:800], k=rng.randint(2, 4))) for _ in range(20000)}
    (folder / "lexicon.txt").write_text("".join(f"{w}\n" for w in sorted(words)))
    word_list = sorted(words)
    sentences = []
    for _ in range(n_sentences):
        parts = [rng.choice(word_list) if rng.random() < 0.5 else rng.choice(chars) for _ in range(rng.randint(15, 30))]
        sentences.append("".join(parts)[:60])
    return sentences, word_list


def original_lattice(tokens: list[str], lexicon: set[str]) -> tuple[list, list]:
    """The original's method: prefixes of the joined token string from every start; a reachability search per
    inner boundary with that boundary's edges removed (the igraph step)."""
    sep = "\u0001"
    payload = [(t, i, 1) for i, t in enumerate(tokens)]
    for i in range(len(tokens)):
        for j in range(i + 1, len(tokens) + 1):
            key = sep.join(tokens[i:j])
            if key in lexicon:
                payload.append((key, i, j - i))
    payload.sort(key=lambda x: (x[1] + x[2], x[2]))
    n = len(tokens)
    edges = [(p, p + length) for _, p, length in payload]
    cuts = []
    for b in range(1, n):
        adj = {}
        for u, v in edges:
            if u != b and v != b:
                adj.setdefault(u, []).append(v)
        seen, queue = {0}, deque([0])
        while queue:
            for v in adj.get(queue.popleft(), ()):
                if v not in seen:
                    seen.add(v)
                    queue.append(v)
        if n not in seen:
            cuts.append(b)
    return payload, cuts


def bench_tokenization(args) -> list[tuple[str, float]]:
    from alicemind.latticebert import LatticeBertTokenizer

    folder = Path(tempfile.mkdtemp())
    sentences, words = synthetic(folder, args.sentences)
    tok = LatticeBertTokenizer.from_files(folder / "vocab.txt", folder / "lexicon.txt")
    backend = tok.char_tokenizer.backend
    rows = []

    def rate(fn, n) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return n / statistics.median(times)

    rows.append(("character WordPiece only (Rust, batch)", rate(lambda: backend.encode_batch(sentences,
                 add_special_tokens=False), len(sentences))))  # fmt: skip
    rows.append(("ours: lattice + segments (batch)", rate(lambda: tok.lattices(sentences), len(sentences))))
    rows.append(("ours: padded tensors [CLS] A [SEP]", rate(lambda: tok(sentences), len(sentences))))
    encoded = [e.tokens for e in backend.encode_batch(sentences, add_special_tokens=False)]
    lexicon = {"\u0001".join(list(w)) for w in words}
    few = encoded[: max(50, len(encoded) // 20)]
    rows.append(("original's algorithm (re-written here)", rate(lambda: [original_lattice(t, lexicon) for t in few],
                 len(few))))  # fmt: skip
    # The two must agree on what they build.
    ours = tok.lattices(sentences[:50])
    for lat, toks in zip(ours, encoded[:50]):
        payload, cuts = original_lattice(toks, lexicon)
        assert [p[1] for p in payload] == lat.starts and [p[2] for p in payload] == lat.lengths
        from alicemind.latticebert.lattice import cut_points

        assert cut_points(lat.starts, lat.lengths, len(toks)) == cuts
    return rows


def bench_forward(args, size: dict) -> tuple[float, float, float]:
    import torch
    import transformers

    from alicemind.latticebert import LatticeBertConfig, LatticeBertModel

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = LatticeBertConfig.from_preset(size["preset"], vocab_size=21128 + 20000, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0)  # fmt: skip
    ours = LatticeBertModel(cfg).eval()
    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
        hidden_act="gelu_new", max_position_embeddings=512, type_vocab_size=16, attn_implementation="sdpa",
    )).eval()  # fmt: skip
    g = torch.Generator().manual_seed(1)
    b, n = args.batch, args.seq
    ids = torch.randint(1000, 20000, (b, n), generator=g)
    mask = torch.ones_like(ids)
    # A realistic lattice: ~75% characters in order, words over them (starts <= ends < seq).
    starts = torch.sort(torch.randint(0, int(n * 0.75), (b, n), generator=g), dim=1).values
    ends = (starts + torch.randint(0, 3, (b, n), generator=g)).clamp(max=n - 1)

    runs = {
        "ours": lambda: ours(ids, attention_mask=mask, lattice_starts=starts, lattice_ends=ends),
        "hf": lambda: hf(input_ids=ids, attention_mask=mask),
        "bias": lambda: ours.position_bias(starts, ends),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn()
        # Interleaved, so that load changes on a shared machine hit every model alike.
        for _ in range(args.iters):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    t_ours, t_hf, t_bias = (statistics.median(times[k]) for k in ("ours", "hf", "bias"))
    return b * n / t_hf, b * n / t_ours, t_bias / t_ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    import tokenizers
    import torch
    import transformers

    tok_rows = bench_tokenization(args)
    sizes = [{"name": "tiny (H256, 4 layers, 4 heads)", "preset": "latticebert.tiny"},
             {"name": "lite (H512, 6 layers, 8 heads)", "preset": "latticebert.lite"}]  # fmt: skip
    fwd = [(s["name"], *bench_forward(args, s)) for s in sizes]
    lines = [
        "# LatticeBERT: lattice tokenization and the cost of the lattice position bias",
        "",
        f"Device: CPU ({platform.machine()}, {args.threads} threads, shared machine). torch {torch.__version__}, "
        f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}. Median of 3 (tokenization) / "
        f"{args.iters} interleaved (forward) runs after warm-up; fp32. Synthetic sentences of up to 60 characters, 3,000-character "
        "vocab, 20,000-word lexicon (about half the text covered by lexicon words).",
        "",
        "| tokenization | sentences/s |",
        "|---|---|",
        *[f"| {name} | {value:,.0f} |" for name, value in tok_rows],
        "",
        f"Forward, batch {args.batch} x {args.seq} lattice units (a plain BERT sees the same number of tokens):",
        "",
        "| size | plain BERT (HF sdpa) units/s | LatticeBERT units/s | LatticeBERT / BERT | share of time in the bias |",
        "|---|---|---|---|---|",
        *[f"| {name} | {hf:,.0f} | {ours:,.0f} | {ours / hf:.2f}x | {share:.0%} |" for name, hf, ours, share in fwd],
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latticebert.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
