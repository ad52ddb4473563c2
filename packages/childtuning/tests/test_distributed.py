"""Under torch.distributed (gloo, 2 CPU processes) every rank gets the same D mask: F is averaged over ranks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from alicemind.childtuning import fisher_information, select_top_p

# Shared by the worker processes and the in-test reference.
DEFINITIONS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def make_model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))

    def make_batches(seed, n=3):
        gen = torch.Generator().manual_seed(seed)
        return [(torch.randn(5, 6, generator=gen), torch.randint(0, 3, (5,), generator=gen)) for _ in range(n)]

    def loss_fn(model, batch):
        x, y = batch
        return nn.functional.cross_entropy(model(x), y) * 20.0
    """
)

WORKER = DEFINITIONS + textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    from alicemind.childtuning import fisher_information

    rank, init_file, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=2)
    try:
        fisher = fisher_information(
            make_model(), make_batches(rank), loss_fn, param_filter=lambda n, p: True, progress=False
        )
        torch.save(fisher, out)
    finally:
        dist.destroy_process_group()
    """
)


def test_ranks_share_one_mask_equal_to_the_pooled_fisher(tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    outs = [tmp_path / f"rank{r}.pt" for r in range(2)]
    procs = [
        subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "init"), str(outs[r])]) for r in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    per_rank = [torch.load(o, weights_only=True) for o in outs]

    ns: dict = {}
    exec(DEFINITIONS, ns)  # the same model, shards and loss, in one process over both shards
    batches = ns["make_batches"](0) + ns["make_batches"](1)
    pooled = fisher_information(
        ns["make_model"](), batches, ns["loss_fn"], param_filter=lambda n, p: True, progress=False
    )
    for name, f in pooled.items():
        assert torch.equal(per_rank[0][name], per_rank[1][name]), name
        torch.testing.assert_close(per_rank[0][name], f, rtol=1e-5, atol=1e-9)
    masks = [select_top_p(f, 0.3) for f in per_rank]
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in pooled)
