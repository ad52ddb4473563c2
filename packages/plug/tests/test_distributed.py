"""TP=2 and FSDP2 with ``torchrun --nproc_per_node 2`` and a 2 x 2 mesh with ``--nproc_per_node 4`` (gloo, CPU,
float64) against one process: one launch per world size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from plug_testing import (
    classify_args,
    finetune_args,
    logged_losses,
    tiny_config,
    write_afqmc,
    write_finetune_data,
    write_vocab,
)

from alicemind.core.cli import main
from alicemind.plug import PlugForConditionalGeneration

WORKER = Path(__file__).with_name("plug_dist_worker.py")


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent)}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]


def _results(out: Path, scenario: str) -> list[dict]:
    return [json.loads((out / f"{scenario}-rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    # A larger init than the released 0.00707 so that greedy outputs differ between rows and steps.
    torch.manual_seed(0)
    model = PlugForConditionalGeneration(tiny_config(initializer_range=0.3)).double()
    folder = model.save_pretrained(tmp_path_factory.mktemp("plug") / "model")
    write_vocab(folder / "vocab.txt", 128)
    return folder


@pytest.fixture(scope="module")
def out(model_dir, tmp_path_factory) -> Path:
    """One two-rank launch runs every scenario (a launch costs several seconds of start-up)."""
    out = tmp_path_factory.mktemp("dist")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    (out / "prompts.txt").write_text("一丁七\n万丈\n", encoding="utf-8")
    write_finetune_data(out)
    write_afqmc(out / "afqmc")
    _run([*torchrun, str(WORKER), "tp,fsdp,cli-finetune,cli-classify,cli-generate", str(model_dir), str(out)], out)
    return out


def test_tp2_forward_and_greedy_generation_equal_tp1(out):
    ranks = _results(out, "tp")
    for result in ranks:
        assert result["local_vocab_rows"] == 64 and result["local_heads"] == 4  # really sharded in two
        assert result["max_diff"] < 1e-10 and result["same_inf"]
        assert result["tokens"] == result["want_tokens"]
        assert len({tuple(row) for row in result["tokens"]}) > 1  # not a degenerate constant output
    assert ranks[0]["tokens"] == ranks[1]["tokens"]


def test_sampling_and_beam_search_under_tp2_equal_one_process(out):
    ranks = _results(out, "tp")
    for name in ("sample", "beam"):
        tp2, one = ranks[0][name]
        assert tp2 == one and ranks[1][name] == ranks[0][name], name  # same seed: the same draws on every rank
    greedy = ranks[0]["tokens"]
    assert [row[:7] for row in ranks[0]["sample"][0]] != [row[:7] for row in greedy]  # sampling really sampled


def test_dp2_x_tp2_mesh_forward_and_step_equal_one_process(model_dir, tmp_path):
    """The one four-rank launch: FSDP2 over dp x tensor parallel over tp on a 2 x 2 mesh."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4"]
    _run([*torchrun, str(WORKER), "dp-tp", str(model_dir), str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"dp-tp-rank{r}.json").read_text()) for r in range(4)]
    for result in ranks:
        assert result["params"] == result["expected_params"]
        assert result["row_shards"] == [0, 0]  # fc_in's rows split over dp (strided) and over tp
        assert result["local_shape"] == [64 // 4, 32]  # fc_in's 64 rows: half per tp rank, half again per dp rank
        assert result["forward_diff"] < 1e-10 and result["step_diff"] < 1e-10


def test_fsdp2_step_equals_single_process_step(out):
    for result in _results(out, "fsdp"):
        assert result["params"] == result["expected_params"]
        assert result["local_rows"] == 64  # each rank holds half of the embedding table
        assert result["moved"] > 1e-4  # the step changed the weights...
        assert result["max_diff"] < 1e-10  # ...exactly as the single-process step on the whole batch did


def test_generate_verb_under_torchrun_equals_one_process(model_dir, out):
    assert all(r["exit"] == 0 for r in _results(out, "cli-generate"))
    args = ["plug", "generate", "--model", str(model_dir), "--input", str(out / "prompts.txt"), "--greedy",
            "--max-new-tokens", "5", "--output", str(out / "tp1-generate.txt")]  # fmt: skip
    torch.set_default_dtype(torch.float64)  # the worker's dtype: the saved float64 weights load as they are
    try:
        assert main(args) == 0
    finally:
        torch.set_default_dtype(torch.float32)
    tp2 = (out / "tp2-generate.txt").read_text(encoding="utf-8").splitlines()
    assert len(tp2) == 2 and all(tp2)
    assert tp2 == (out / "tp1-generate.txt").read_text(encoding="utf-8").splitlines()


def test_finetune_verb_saved_at_tp2_resumes_at_dp2_and_at_tp1_with_the_same_loss(model_dir, out, capsys):
    assert all(r["exit"] == [0, 0] for r in _results(out, "cli-finetune"))
    saved = out / "ft-tp2" / "checkpoint-2"
    assert (saved / "dcp" / ".metadata").is_file() and not (saved / "model.safetensors").exists()
    tp2 = logged_losses(out / "ft-tp2")
    assert sorted(tp2) == [1, 2, 3] and tp2[1] > tp2[3]  # it trains
    dp2 = logged_losses(out / "ft-dp2")  # FSDP2 over two ranks, from the TP=2 run's step 2
    assert abs(dp2[3] - tp2[3]) < 1e-6
    resume = f"+training.resume={saved}"
    assert main(finetune_args(model_dir, out, out / "ft-tp1", resume)) == 0  # one process, whole model
    assert json.loads(capsys.readouterr().out)["layout"] == {"tp": 1, "dp": 1}
    tp1 = logged_losses(out / "ft-tp1")
    assert abs(tp1[3] - tp2[3]) < 1e-6 and tp1[3] != tp2[2]
    # Final folders are ordinary (fused, strict-loading) model folders; both resumed runs took the same step.
    finals = [PlugForConditionalGeneration.from_pretrained(out / run / "final") for run in ("ft-tp1", "ft-dp2")]
    trained = PlugForConditionalGeneration.from_pretrained(out / "ft-tp2" / "final")
    start = PlugForConditionalGeneration.from_pretrained(model_dir)
    for name, _ in trained.named_parameters():
        assert torch.allclose(finals[0].get_parameter(name), finals[1].get_parameter(name), atol=1e-10), name
    moved = trained.encoder.layers[0].self_attn.qkv_proj.weight - start.encoder.layers[0].self_attn.qkv_proj.weight
    assert float(moved.detach().abs().max()) > 1e-4
    metrics = json.loads((out / "ft-dp2" / "final" / "eval_metrics.json").read_text())
    assert set(metrics) >= {"bleu-1", "bleu-4", "rouge-l"}


def test_clue_classification_at_tp2_equals_one_process(model_dir, out, capsys):
    assert all(r["exit"] == 0 for r in _results(out, "cli-classify"))
    args = classify_args("clue-afqmc", model_dir, out / "cls-tp1", f"data_dir={out / 'afqmc'}", "parallel.dtype=float64",
                         steps=6)  # fmt: skip
    assert main(args) == 0
    one = json.loads(capsys.readouterr().out)
    tp2, tp1 = logged_losses(out / "cls-tp2"), logged_losses(out / "cls-tp1")
    assert sorted(tp2) == list(range(1, 7)) and tp2[1] != tp2[6]
    assert max(abs(tp2[k] - tp1[k]) for k in tp1) < 1e-6  # the same head init and the same steps
    saved = json.loads((out / "cls-tp2" / "final" / "eval_metrics.json").read_text())
    assert saved["accuracy"] == one["metrics"]["accuracy"]
