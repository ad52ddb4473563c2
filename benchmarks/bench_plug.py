"""PLUG: tensor-parallel cost on CPU (TP=2 over gloo vs TP=1) and the streaming converter's memory.

    nice -n 10 python benchmarks/bench_plug.py            # writes benchmarks/results/plug.md and plug.json

The TP=2 run is a ``torchrun --nproc_per_node 2`` child (this file in worker mode), one thread per rank, against
one process with one thread: on CPU the ratio is the price of the all-reduces (two per block) for a given shape.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "plug" / "tests"))
SHAPE = dict(hidden_size=256, num_attention_heads=8, intermediate_size=1024, num_hidden_layers=4, dec_hidden_layers=2,
             vocab_size=4096, real_vocab_size=4000, max_position_embeddings=256)  # fmt: skip
BATCH, SOURCE, TARGET, ITERS = 4, 128, 32, 5


def _forward_seconds(model) -> float:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(104, 4000, (BATCH, SOURCE), generator=g)
    dec = torch.randint(104, 4000, (BATCH, TARGET), generator=g)
    with torch.no_grad():
        model(ids, decoder_input_ids=dec)  # warm-up
        start = time.perf_counter()
        for _ in range(ITERS):
            model(ids, decoder_input_ids=dec)
    return (time.perf_counter() - start) / ITERS


def worker(folder: str, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from alicemind.plug import PlugConfig, PlugForConditionalGeneration, parallelize_plug

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("tp",))
    with torch.device("meta"):
        model = PlugForConditionalGeneration(PlugConfig.from_json_file(Path(folder) / "config.json"))
    parallelize_plug(model, mesh, weights=folder).eval()
    seconds = _forward_seconds(model)
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({"seconds": seconds}))
    dist.destroy_process_group()


def main() -> None:
    from plug_testing import released_state_dict, write_release

    from alicemind.plug import PlugConfig, PlugForConditionalGeneration

    torch.set_num_threads(1)
    results: dict = {"machine": f"{platform.machine()} {os.cpu_count()} cores (shared, loaded)",
                     "torch": torch.__version__, "python": platform.python_version()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = PlugForConditionalGeneration(PlugConfig.from_preset("plug.tiny", **SHAPE)).eval()
        model.save_pretrained(tmp / "model")
        tp1 = _forward_seconds(model)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
               "--worker", str(tmp / "model"), str(tmp / "tp2.json")]  # fmt: skip
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        tp2 = json.loads((tmp / "tp2.json").read_text())["seconds"]
        tokens = BATCH * (SOURCE + TARGET)
        results["tp"] = {"shape": SHAPE, "batch": BATCH, "source": SOURCE, "target": TARGET,
                         "tp1_tokens_per_s": tokens / tp1, "tp2_tokens_per_s": tokens / tp2, "tp2_over_tp1": tp1 / tp2}  # fmt: skip
        # Conversion memory: the test's measurement on a larger synthetic 8-way release.
        config = PlugConfig.from_preset("plug.tiny", **{**SHAPE, "hidden_size": 512, "intermediate_size": 2048,
                                                        "vocab_size": 8192, "real_vocab_size": 8000})  # fmt: skip
        state = released_state_dict(config)
        size = sum(t.numel() * t.element_size() for t in state.values())
        folder = write_release(tmp / "rel", config, state)
        del state
        script = ROOT / "packages" / "plug" / "tests" / "test_convert.py"
        source = script.read_text().split('_MEMORY_SCRIPT = """')[1].split('"""')[0]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", source, str(folder), str(tmp / "out")], check=True,
                              capture_output=True, text=True, env={**env, "MALLOC_MMAP_THRESHOLD_": "65536"})  # fmt: skip
        rise = json.loads(done.stdout.strip().splitlines()[-1])
        results["convert"] = {"model_mb": size / 1e6, "shard_mb": size / 8e6, "streaming_peak_rise_mb": rise["streaming"] / 1e6,
                              "whole_merge_peak_rise_mb": rise["whole"] / 1e6, "seconds_both": time.perf_counter() - start}  # fmt: skip
    out = ROOT / "benchmarks" / "results"
    (out / "plug.json").write_text(json.dumps(results, indent=1) + "\n")
    t, c = results["tp"], results["convert"]
    (out / "plug.md").write_text(
        f"# PLUG benchmarks\n\nMachine: {results['machine']}; torch {results['torch']}; figures from a shared machine "
        f"under load by other jobs (nice 10), one run: read them as rough.\n\n"
        f"## Tensor parallel on CPU (gloo), forward, hidden {SHAPE['hidden_size']}, {SHAPE['num_hidden_layers']}+"
        f"{SHAPE['dec_hidden_layers']} layers, batch {BATCH}, source {SOURCE}, target {TARGET}, 1 thread per rank\n\n"
        f"| layout | tokens/s |\n|---|---|\n| TP=1 (1 process) | {t['tp1_tokens_per_s']:.0f} |\n"
        f"| TP=2 (2 ranks) | {t['tp2_tokens_per_s']:.0f} |\n\nTP=2 / TP=1 throughput: {t['tp2_over_tp1']:.2f}x "
        f"(2x would be free communication).\n\n## Streaming conversion memory (synthetic 8-way release)\n\n"
        f"| model | one input shard | peak RSS rise, streaming converter | peak RSS rise, whole-model merge |\n"
        f"|---|---|---|---|\n| {c['model_mb']:.1f} MB | {c['shard_mb']:.1f} MB | {c['streaming_peak_rise_mb']:.1f} MB | "
        f"{c['whole_merge_peak_rise_mb']:.1f} MB |\n\nNo GPU figures: none was used for this run.\n"
    )
    print((out / "plug.md").read_text())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
