"""mPLUG in one run: core's CLIP ``VisionTransformer`` forward against ``transformers.CLIPVisionModel`` (same
weights, sdpa, fp32), and caption generation throughput (beam search through core's engine with a KV cache)
against the release's way of decoding (the whole prefix re-run each step, no cache) on the same model.

Both sides of each comparison are built in one process and called alternately (median of ``--iters`` calls after
a warm-up), so load drifting on a shared machine hits both alike.

    python benchmarks/bench_mplug.py [--device cpu|cuda] [--vit ViT-B/16 --res 224 --batch 4] [--layers 4 --hidden 256]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _median_pair(a, b, iters: int, sync) -> tuple[float, float]:
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(iters):
        for fn, out in ((a, ta), (b, tb)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def bench_vit(args, device, sync):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from alicemind.core.checkpoint.clip import core_to_hf_clip_vision
    from alicemind.core.layers import VisionConfig, VisionTransformer

    cfg = VisionConfig.preset(args.vit, image_size=args.res)
    ours = VisionTransformer(cfg).eval().to(device)
    hf_cfg = CLIPVisionConfig(hidden_size=cfg.width, intermediate_size=4 * cfg.width, num_hidden_layers=cfg.layers,
                              num_attention_heads=cfg.heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
                              hidden_act="quick_gelu", attn_implementation="sdpa")  # fmt: skip
    hf = CLIPVisionModel(hf_cfg).eval()
    prefix = "vision_model." if next(iter(hf.state_dict())).startswith("vision_model.") else ""
    # Not lenient: strict=False only because HF keeps a non-persistent-looking position_ids buffer; anything else
    # missing or unexpected means the two models would not hold the same weights.
    missing, unexpected = hf.load_state_dict(core_to_hf_clip_vision(ours.state_dict(), prefix), strict=False)
    if unexpected or not all(k.endswith("position_ids") for k in missing):
        raise SystemExit(f"CLIP key map does not match CLIPVisionModel: missing {missing}, unexpected {unexpected}")
    hf = hf.to(device)
    pixels = torch.randn(args.batch, 3, args.res, args.res, device=device)
    with torch.no_grad():
        diff = (ours.forward_features(pixels) - hf(pixel_values=pixels).last_hidden_state).abs().max().item()
        t_ours, t_hf = _median_pair(lambda: ours.forward_features(pixels), lambda: hf(pixel_values=pixels),
                                    args.iters, sync)  # fmt: skip
    return {"vit": args.vit, "res": args.res, "batch": args.batch, "max_abs_diff": diff,
            "ours_images_per_s": args.batch / t_ours, "hf_images_per_s": args.batch / t_hf,
            "speedup": t_hf / t_ours}  # fmt: skip


def bench_caption(args, device, sync):
    import torch

    from alicemind.mplug import MPlugConfig, MPlugForCaption

    config = MPlugConfig.from_preset(
        "mplug.en.base", image_size=args.res, hidden_size=args.hidden, num_attention_heads=args.hidden // 64,
        intermediate_size=4 * args.hidden, text_decode_layers=args.layers, vocab_size=30522,
        vision_overrides={"layers": args.layers, "width": args.hidden, "heads": args.hidden // 64, "output_dim": 0},
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, vision_attention_dropout=0.0,
    )  # fmt: skip
    model = MPlugForCaption(config).eval().to(device)
    pixels = torch.randn(args.batch, 3, args.res, args.res, device=device)
    new = args.new
    gen = dict(num_beams=5, max_new_tokens=new, min_length=new, eos_token_id=None)

    def cached():
        return model.generate(pixels, **gen)

    def uncached():  # the release's TextGenerator: no KV cache, the whole prefix re-run (greedy here, beam 1)
        image, mask = model.encode_image(pixels)
        ids = torch.full((args.batch, 1), config.bos_token_id, device=device)
        for _ in range(new):
            logits = model.text_decoder(ids, torch.ones_like(ids), image, mask)
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
        return ids

    def cached_greedy():
        return model.generate(pixels, num_beams=1, max_new_tokens=new, min_length=new, eos_token_id=None)

    with torch.no_grad():
        assert torch.equal(cached_greedy(), uncached())
        t_greedy, t_uncached = _median_pair(cached_greedy, uncached, args.iters, sync)
        t_beam, _ = _median_pair(cached, lambda: None, args.iters, sync)
    tokens = args.batch * new
    return {"layers": args.layers, "hidden": args.hidden, "res": args.res, "batch": args.batch, "new_tokens": new,
            "greedy_cached_tokens_per_s": tokens / t_greedy, "greedy_uncached_tokens_per_s": tokens / t_uncached,
            "greedy_cache_speedup": t_uncached / t_greedy, "beam5_cached_tokens_per_s": tokens / t_beam}  # fmt: skip


def main() -> None:
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vit", default="ViT-B/16")
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4, help="caption model: ViT and decoder layers")
    parser.add_argument("--hidden", type=int, default=256, help="caption model width")
    parser.add_argument("--new", type=int, default=20, help="generated tokens per caption")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "mplug.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device": str(device),
            "threads": torch.get_num_threads(),
        },  # fmt: skip
        "vit_forward": bench_vit(args, device, sync),
        "caption_generation": bench_caption(args, device, sync),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
