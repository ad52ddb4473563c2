"""TP=2 and FSDP2 with ``torchrun --nproc_per_node 2`` (gloo, CPU, float64) against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from plug_testing import tiny_config, write_vocab

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
    _run([*torchrun, str(WORKER), "tp,fsdp,dcp-save,cli-generate", str(model_dir), str(out)], out)
    return out


def test_tp2_forward_and_greedy_generation_equal_tp1(out):
    ranks = _results(out, "tp")
    for result in ranks:
        assert result["local_vocab_rows"] == 64 and result["local_heads"] == 4  # really sharded in two
        assert result["max_diff"] < 1e-10 and result["same_inf"]
        assert result["tokens"] == result["want_tokens"]
        assert len({tuple(row) for row in result["tokens"]}) > 1  # not a degenerate constant output
    assert ranks[0]["tokens"] == ranks[1]["tokens"]


def test_fsdp2_step_equals_single_process_step(out):
    for result in _results(out, "fsdp"):
        assert result["params"] == result["expected_params"]
        assert result["local_rows"] == 64  # each rank holds half of the embedding table
        assert result["moved"] > 1e-4  # the step changed the weights...
        assert result["max_diff"] < 1e-10  # ...exactly as the single-process step on the whole batch did


def test_distributed_checkpoint_saved_at_tp2_resumes_at_tp1(model_dir, out):
    saved = _results(out, "dcp-save")
    assert saved[0]["losses"] == saved[1]["losses"]
    assert saved[0]["losses"][0] > saved[0]["losses"][2]  # training lowers the loss
    _run([sys.executable, str(WORKER), "dcp-load", str(model_dir), str(out)], out)
    resumed = json.loads((out / "dcp-load-rank0.json").read_text())["losses"][0]
    assert abs(resumed - saved[0]["losses"][2]) < 1e-10


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
