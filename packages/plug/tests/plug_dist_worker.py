"""Run under ``torchrun`` (gloo, CPU) by test_distributed.py; writes ``SCENARIO-rank{r}.json`` results.

``python plug_dist_worker.py SCENARIO[,SCENARIO...] MODEL_DIR OUT_DIR``; with ``--nproc_per_node 2``: ``tp`` (TP=2
forward, greedy, seeded sampling and beam search vs the single-process model), ``fsdp`` (FSDP2 step with
activation checkpointing vs the single-process step), ``cli-finetune`` (the finetune verb at TP=2, then resumed at
DP=2 from the TP=2 run's checkpoint), ``cli-classify`` (clue-afqmc at TP=2), ``cli-generate`` (last: the verb ends the process group). With
``--nproc_per_node 4``: ``dp-tp`` (a 2 x 2 dp x tp mesh: forward and one step vs one process).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import loss_parallel

from alicemind.core.generation import GenerationConfig, generate
from alicemind.plug import PlugConfig, PlugForConditionalGeneration, parallelize_plug, unfuse_projections

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


def batch(rows: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(104, 120, (rows, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = torch.randint(104, 120, (rows, 6), generator=g)
    return ids, mask, labels


def build_parallel(folder: Path, mesh, **kw) -> PlugForConditionalGeneration:
    config = PlugConfig.from_json_file(
        folder / "config.json", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    with torch.device("meta"):
        model = PlugForConditionalGeneration(config)
    return parallelize_plug(model, mesh, weights=folder, **kw)


def reference(folder: Path) -> PlugForConditionalGeneration:
    return PlugForConditionalGeneration.from_pretrained(
        folder, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )


def step(model, optim, ids, mask, labels) -> float:
    """One AdamW step; sharded logits take the vocabulary-parallel loss."""
    optim.zero_grad()
    with loss_parallel():
        loss = model(ids, mask, labels=labels).loss
        loss.backward()
    optim.step()
    return float((loss.full_tensor() if isinstance(loss, DTensor) else loss).detach())


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def scenario_tp(folder: Path) -> dict:
    mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("tp",))
    model = build_parallel(folder, mesh).eval()
    ref = reference(folder).eval()
    ids, mask, labels = batch()
    with torch.no_grad():
        got = full(model(ids, mask, labels=labels).logits)
        want = ref(ids, mask, labels=labels).logits
    finite = torch.isfinite(want)
    config = GenerationConfig.from_dict({**ref.generation_defaults(), "max_new_tokens": 8, "min_length": 8})
    tokens = generate(model, ids, mask, config).sequences.tolist()
    want_tokens = generate(ref, ids, mask, config).sequences.tolist()
    decoded = {}
    for name, extra in (("sample", {"do_sample": True, "top_k": 20, "temperature": 0.9}),
                        ("beam", {"num_beams": 3, "length_penalty": 0.6})):  # fmt: skip
        cfg = GenerationConfig.from_dict({**ref.generation_defaults(), "max_new_tokens": 6, **extra})
        decoded[name] = [generate(m, ids, mask, cfg, generator=torch.Generator().manual_seed(7)).sequences.tolist()
                         for m in (model, ref)]  # fmt: skip
    shard = model.embeddings.word_embeddings.weight
    return {
        "max_diff": float((got[finite] - want[finite]).abs().max()),
        "same_inf": bool(torch.equal(torch.isfinite(got), finite)),
        "tokens": tokens,
        "want_tokens": want_tokens,
        "sample": decoded["sample"],
        "beam": decoded["beam"],
        "local_vocab_rows": shard.to_local().shape[0],
        "local_heads": model.encoder.layers[0].self_attn.num_heads,
    }


def scenario_fsdp(folder: Path) -> dict:
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("dp",))
    model = build_parallel(folder, mesh, activation_checkpointing=True).train()
    ref = unfuse_projections(reference(folder)).train()
    ids, mask, labels = batch()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, foreach=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
    half = slice(2 * rank, 2 * rank + 2)
    step(ref, ref_opt, ids, mask, labels)  # the whole batch in one process
    step(model, opt, ids[half], mask[half], labels[half])  # half per rank; FSDP averages the gradients
    want = dict(ref.named_parameters())
    diffs = {}
    for name, param in model.named_parameters():
        clean = name.replace("_checkpoint_wrapped_module.", "")
        diffs[clean] = float((full(param.detach()) - want[clean].detach()).abs().max())
    start = dict(reference(folder).named_parameters())
    moved = max(float((want[k] - start[k]).abs().max()) for k in want if k in start)
    return {"max_diff": max(diffs.values()), "params": len(diffs), "expected_params": len(want), "moved": moved,
            "local_rows": model.embeddings.word_embeddings.weight.to_local().shape[0]}  # fmt: skip


def scenario_cli_generate(folder: Path, out: Path) -> dict:
    """``alicemind plug generate`` on every rank (the verb builds the TP mesh over the launch); rank 0 writes."""
    from alicemind.core.cli import main as cli

    args = ["plug", "generate", "--model", str(folder), "--input", str(out / "prompts.txt"), "--greedy",
            "--max-new-tokens", "5", "--output", str(out / "tp2-generate.txt")]  # fmt: skip
    return {"exit": cli(args)}


def scenario_cli_finetune(folder: Path, out: Path) -> dict:
    """``alicemind plug finetune`` at TP=2 (checkpoint every step), then at DP=2 (FSDP2) resuming its step 2."""
    from plug_testing import finetune_args

    from alicemind.core.cli import main as cli

    tp2 = cli(finetune_args(folder, out, out / "ft-tp2", "parallel.tp=2", batch=4))
    resumed = cli(finetune_args(folder, out, out / "ft-dp2", f"+training.resume={out / 'ft-tp2' / 'checkpoint-2'}",
                                batch=2))  # fmt: skip
    return {"exit": [tp2, resumed]}


def scenario_dp_tp(folder: Path) -> dict:
    """A 2 x 2 mesh (FSDP2 over dp, tensor parallel over tp): forward and one training step against one process
    on the whole batch; each dp group takes half of the batch."""
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    dp_rank = mesh["dp"].get_local_rank()
    model = build_parallel(folder, mesh).train()
    ref = unfuse_projections(reference(folder)).train()
    # Before any forward: after one under no_grad, FSDP2 keeps the root's parameters gathered (no backward
    # reshards them), and an optimizer made then would hold those gathered copies.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
    ids, mask, labels = batch()
    half = slice(2 * dp_rank, 2 * dp_rank + 2)
    with torch.no_grad():
        got = full(model(ids[half], mask[half], labels=labels[half]).logits)
        want = ref(ids[half], mask[half], labels=labels[half]).logits
    finite = torch.isfinite(want)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, foreach=False)
    step(ref, ref_opt, ids, mask, labels)
    step(model, opt, ids[half], mask[half], labels[half])
    want_params = dict(ref.named_parameters())
    diffs = [float((full(p.detach()) - want_params[n].detach()).abs().max()) for n, p in model.named_parameters()]
    weight = model.encoder.layers[0].ffn.fc_in.weight
    return {"forward_diff": float((got[finite] - want[finite]).abs().max()), "step_diff": max(diffs),
            "params": len(diffs), "expected_params": len(want_params),
            "row_shards": [getattr(p, "dim", None) for p in weight.placements], "local_shape": list(weight.to_local().shape)}  # fmt: skip


def scenario_cli_classify(folder: Path, out: Path) -> dict:
    """``alicemind plug finetune --recipe clue-afqmc`` at TP=2 (float64)."""
    from plug_testing import classify_args

    from alicemind.core.cli import main as cli

    args = classify_args("clue-afqmc", folder, out / "cls-tp2", f"data_dir={out / 'afqmc'}", "parallel.tp=2",
                         "parallel.dtype=float64", steps=6)  # fmt: skip
    return {"exit": cli(args)}


SCENARIOS = {"tp": scenario_tp, "fsdp": scenario_fsdp, "cli-generate": scenario_cli_generate, "cli-finetune": scenario_cli_finetune,
             "cli-classify": scenario_cli_classify,
             "dp-tp": scenario_dp_tp}  # fmt: skip


def main() -> None:
    """Scenarios run one after another in one launch (comma-separated), so the suite pays one start-up."""
    names, folder, out = sys.argv[1].split(","), Path(sys.argv[2]), Path(sys.argv[3])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for name in names:
        run = SCENARIOS[name]
        result = run(folder, out) if name.startswith("cli") else run(folder)
        (out / f"{name}-rank{rank}.json").write_text(json.dumps(result))
    if dist.is_initialized():  # the generate verb ends its own process group
        dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
