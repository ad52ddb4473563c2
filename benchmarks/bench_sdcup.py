"""SDCUP encoder vs Hugging Face ``BertModel`` (sdpa) of the same shape and weights, forward only, in one run.

Ours runs UER's LayerNorm (std + eps, population std; a few pointwise ops) where BERT runs the fused
``nn.LayerNorm``; the figure is the price of the released arithmetic. Both models are built in one process and
called alternately (median of ``--iters`` calls after a warm-up), so load drift on a shared machine hits both.
Batches are padded (lengths uniform in [seq/4, seq]), segments 1/2 with 0 = padding; tokens/s counts real tokens.

    python benchmarks/bench_sdcup.py [--layers 4 --hidden 256 --heads 4 --batch 8 --seq 128 --iters 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    import torch
    import transformers

    from alicemind.sdcup import SdcupConfig, SdcupEncoder
    from alicemind.sdcup.convert import export_huggingface_bert

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in (("layers", 4), ("hidden", 256), ("heads", 4), ("batch", 8), ("seq", 128), ("iters", 20),
                          ("threads", 2), ("vocab", 21128)):  # fmt: skip
        p.add_argument(f"--{name}", type=int, default=default)
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = SdcupConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, intermediate_size=4 * args.hidden)  # fmt: skip
    ours = SdcupEncoder(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        export_huggingface_bert(ours, Path(tmp) / "hf")
        hf = transformers.BertModel.from_pretrained(Path(tmp) / "hf", add_pooling_layer=False,
                                                    attn_implementation="sdpa").eval()  # fmt: skip
    lengths = torch.randint(args.seq // 4, args.seq + 1, (args.batch,))
    ids = torch.randint(5, args.vocab, (args.batch, args.seq))
    seg = torch.zeros(args.batch, args.seq, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        seg[row, : n // 3], seg[row, n // 3 : n] = 1, 2
    ids = ids * (seg > 0)
    mask = (seg > 0).long()
    calls = {"ours": lambda: ours(ids, seg).last_hidden_state,
             "hf": lambda: hf(input_ids=ids, token_type_ids=seg, attention_mask=mask).last_hidden_state}  # fmt: skip
    times = {k: [] for k in calls}
    with torch.inference_mode():
        diff = (calls["ours"]() - calls["hf"]())[seg > 0].abs().max().item()
        for _ in range(3):
            for fn in calls.values():
                fn()
        for _ in range(args.iters):
            for name, fn in calls.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    tokens = int(lengths.sum())
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        "# SDCUP encoder vs transformers BertModel (forward, CPU)",
        "",
        f"Taken on a loaded shared machine ({platform.processor() or platform.machine()}, {args.threads} threads, "
        f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), "
        f"torch {torch.__version__}, transformers {transformers.__version__}; layers {args.layers}, hidden "
        f"{args.hidden}, heads {args.heads}, batch {args.batch}, seq {args.seq} ({tokens} real tokens), median of "
        f"{args.iters} alternating calls. Max abs output difference (UER norm vs BERT norm, stated): {diff:.2e}.",
        "",
        "| impl | median ms | real tokens/s | vs transformers |",
        "|---|---|---|---|",
    ]
    for name in calls:
        lines.append(f"| {name} | {1e3 * med[name]:.1f} | {tokens / med[name]:,.0f} | {med['hf'] / med[name]:.2f}x |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sdcup_encoder.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
