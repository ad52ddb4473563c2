"""StructuralLM: the encoder's forward against transformers.LayoutLMModel (sdpa) of the same size, and the
DocumentEncoder's windowing throughput.

1. Forward (tokens/s, fp32, inference) of StructuralLMModel vs LayoutLMModel with the same hidden size, layers,
   heads, FFN and batch; the models differ in the 2-D tables (four separate vs shared x/y + h/w) and StructuralLM's
   bbox table, the rest is core's post-LN stack against Hugging Face's BERT encoder.
2. Encoding (pages/s): synthetic 300-word pages through a byte-level BPE into 512-token windows, stride 128.

    python benchmarks/bench_structurallm.py [--threads 2] [--batch 4 --seq 256 --hidden 256 --layers 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _timed(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--pages", type=int, default=50)
    args = parser.parse_args()

    import torch
    import transformers

    from alicemind.structurallm import DocumentEncoder, StructuralLMConfig, StructuralLMModel, make_document
    from alicemind.structurallm.convert import to_layoutlm_state_dict

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = StructuralLMConfig(vocab_size=50265, hidden_size=args.hidden, num_hidden_layers=args.layers,
                             num_attention_heads=args.hidden // 64, intermediate_size=4 * args.hidden,
                             use_bbox_pos=False)  # fmt: skip
    ours = StructuralLMModel(cfg).eval()
    layout = ours.embeddings.layout
    with torch.no_grad():
        layout.x1_embeddings.weight.copy_(layout.x0_embeddings.weight)
        layout.y1_embeddings.weight.copy_(layout.y0_embeddings.weight)
    state, fields = to_layoutlm_state_dict(ours)
    peer_cfg = transformers.LayoutLMConfig(**fields, attn_implementation="sdpa")
    peer = transformers.LayoutLMModel(peer_cfg).eval()
    peer.load_state_dict(state, strict=True)
    ids = torch.randint(4, cfg.vocab_size, (args.batch, args.seq))
    corner = torch.randint(0, 500, (args.batch, args.seq, 2))
    bbox = torch.cat([corner, corner + 100], -1)
    mask = torch.ones(args.batch, args.seq, dtype=torch.long)
    positions = torch.arange(args.seq)[None] + 2
    with torch.no_grad():
        diff = (ours(ids, bbox=bbox, attention_mask=mask).last_hidden_state
                - peer(input_ids=ids, bbox=bbox, attention_mask=mask, position_ids=positions).last_hidden_state)  # fmt: skip
        t_ours = _timed(lambda: ours(ids, bbox=bbox, attention_mask=mask), args.reps)
        t_peer = _timed(lambda: peer(input_ids=ids, bbox=bbox, attention_mask=mask, position_ids=positions), args.reps)
    tokens = args.batch * args.seq

    sys.path.insert(0, str(Path(__file__).parents[1] / "packages" / "structurallm" / "tests"))
    from structurallm_testing import tiny_tokenizer

    rng = random.Random(0)
    vocab = ["name", "date", "total", "amount", "invoice", "company", "Street", "12/03/1998", "$1,234.50", "of"]
    pages = []
    for _ in range(args.pages):
        words = [rng.choice(vocab) for _ in range(300)]
        boxes = [[(i % 20) * 50, (i // 20) * 60, (i % 20) * 50 + 45, (i // 20) * 60 + 20] for i in range(300)]
        pages.append(make_document(words, boxes, cells=[i // 3 for i in range(300)]))
    with tempfile.TemporaryDirectory() as tmp:
        encoder = DocumentEncoder(tiny_tokenizer(Path(tmp)), max_length=512, stride=128)
        t_enc = _timed(lambda: [encoder.encode(p) for p in pages], 3)
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {args.threads} threads "
        "(shared, loaded machine: other jobs ran at the same time)",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },  # fmt: skip
        "shape": {"batch": args.batch, "seq": args.seq, "hidden": args.hidden, "layers": args.layers},
        "forward_tokens_per_s": {"structurallm": tokens / t_ours, "layoutlm_sdpa": tokens / t_peer},
        "ratio_ours_over_layoutlm": t_peer / t_ours,
        "max_abs_diff_hidden": float(diff.abs().max()),
        "encode_pages_per_s": args.pages / t_enc,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "structurallm.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
