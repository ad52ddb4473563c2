"""The training loop: accumulation equivalence, learning, callbacks (order, extra loss, clipped gradients),
logged metrics, best-model selection and clear errors."""

from __future__ import annotations

import collections
import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alicemind.core.training import Trainer, TrainerCallback, TrainingConfig, move_to_device
from alicemind.core.training.checkpoint import load_model_weights


class Blobs(Dataset):
    """Two Gaussian blobs in 4-D: class = sign of the first coordinate, plus a regression target."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.labels = (self.x[:, 0] > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.labels[i]}


class Classifier(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.Dropout(dropout), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict:
        logits = self.net(x)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return {"loss": nn.functional.cross_entropy(logits, labels), "metrics": {"accuracy": accuracy}}


def _model(seed: int = 0, **kwargs) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(**kwargs)


def _config(**overrides) -> TrainingConfig:
    values = dict(max_steps=6, lr=1e-2, progress_bar=False, log_every=1, max_grad_norm=None, resume=None)
    values.update(overrides)
    return TrainingConfig(**values)


def test_accumulation_2x4_equals_batch_8() -> None:
    data = Blobs(48)
    # In float64: the test is about the accumulation arithmetic, and fp32 summation-order differences (the CPU's
    # SIMD width decides the blocking) are amplified by Adam's 1/sqrt(v) on near-zero gradients.
    data.x = data.x.double()
    big = Trainer(_model().double(), _config(), DataLoader(data, batch_size=8, shuffle=True))
    small = Trainer(
        _model().double(), _config(gradient_accumulation_steps=2), DataLoader(data, batch_size=4, shuffle=True)
    )
    state_big, state_small = big.train(), small.train()
    for a, b in zip(big.model.parameters(), small.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # The logged loss is the full-batch loss in both runs.
    losses_big = [r["loss"] for r in state_big.log_history]
    losses_small = [r["loss"] for r in state_small.log_history]
    assert losses_big == pytest.approx(losses_small, abs=1e-6)
    # 48 samples / 4 = 12 micro-batches = 6 steps: the position is the end of epoch 0.
    assert (state_small.step, state_small.epoch, state_small.batches_in_epoch) == (6, 0, 12)


def test_loss_falls_and_metrics_are_logged(tmp_path) -> None:
    cfg = _config(output_dir=str(tmp_path), num_epochs=8, max_steps=None, log_every=4, scheduler="constant")
    trainer = Trainer(_model(), cfg, DataLoader(Blobs(), batch_size=8, shuffle=True))
    state = trainer.train()
    assert state.step == 8 * 64 // 8
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(4, 65, 4))
    assert set(lines[0]) == {"step", "loss", "lr", "epoch", "accuracy"}
    assert lines[-1]["loss"] < 0.4 * lines[0]["loss"]
    assert lines[-1]["accuracy"] > 0.9
    assert state.loss == lines[-1]["loss"]


class Recorder(TrainerCallback):
    """Records hook calls, and what the gradients look like where the contract says they are final."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.grad_norms: list[float] = []

    def on_train_begin(self, trainer) -> None:
        self.calls.append("on_train_begin")

    def extra_loss(self, trainer, batch, outputs):
        self.calls.append("extra_loss")
        return None

    def after_backward(self, trainer) -> None:
        self.calls.append("after_backward")

    def before_optimizer_step(self, trainer) -> None:
        self.calls.append("before_optimizer_step")
        grads = [p.grad for p in trainer.model.parameters()]
        self.grad_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    def on_step_end(self, trainer) -> None:
        self.calls.append(f"on_step_end:{trainer.state.step}")
        assert all(p.grad is None for p in trainer.model.parameters())

    def on_evaluate(self, trainer, metrics) -> None:
        self.calls.append(f"on_evaluate:{metrics['score']}")

    def on_train_end(self, trainer) -> None:
        self.calls.append("on_train_end")


def test_hook_order_and_clipped_gradients() -> None:
    rec = Recorder()
    cfg = _config(max_steps=2, gradient_accumulation_steps=2, eval_every=2, max_grad_norm=1e-3)
    Trainer(_model(), cfg, DataLoader(Blobs(), batch_size=4), eval_fn=lambda m: {"score": 1.0}, callbacks=[rec]).train()
    micro = ["extra_loss", "after_backward"]
    assert rec.calls == [
        "on_train_begin",
        *micro,
        *micro,
        "before_optimizer_step",
        "on_step_end:1",
        *micro,
        *micro,
        "before_optimizer_step",
        "on_step_end:2",
        "on_evaluate:1.0",  # eval_every and the end coincide: one evaluation
        "on_train_end",
    ]
    # Gradients seen before the step are already clipped to max_grad_norm.
    assert rec.grad_norms == pytest.approx([1e-3, 1e-3], rel=1e-4)


class L2Penalty(TrainerCallback):
    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.grads: list[torch.Tensor] = []

    def extra_loss(self, trainer, batch, outputs):
        if self.weight == 0.0:
            return None
        return 0.5 * self.weight * trainer.model.net[0].weight.pow(2).sum()

    def before_optimizer_step(self, trainer) -> None:
        self.grads.append(trainer.model.net[0].weight.grad.clone())


def test_extra_loss_changes_gradient_by_its_derivative() -> None:
    data = Blobs(16)
    plain, penalised = L2Penalty(0.0), L2Penalty(0.3)
    initial = _model().net[0].weight.detach().clone()
    for cb in (plain, penalised):
        cfg = _config(max_steps=1, gradient_accumulation_steps=2)
        Trainer(_model(), cfg, DataLoader(data, batch_size=8), callbacks=[cb]).train()
    # d/dw (0.5 * c * |w|^2) = c * w, added once per micro-batch and averaged over the 2 micro-batches.
    torch.testing.assert_close(penalised.grads[0] - plain.grads[0], 0.3 * initial, rtol=1e-5, atol=1e-6)


def test_best_model_is_kept_by_metric(tmp_path) -> None:
    scores = iter([0.2, 0.9, 0.5])
    snapshots = {}

    def eval_fn(model):
        assert not model.training and not torch.is_grad_enabled()
        score = next(scores)
        snapshots[score] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"score": score, "loss": 1 - score}

    cfg = _config(output_dir=str(tmp_path), max_steps=3, eval_every=1, metric_for_best="score")
    trainer = Trainer(_model(), cfg, DataLoader(Blobs(), batch_size=8), eval_fn=eval_fn)
    state = trainer.train()
    assert trainer.model.training
    assert (state.best_metric, state.best_step) == (0.9, 2)
    best = _model(seed=1)
    load_model_weights(best, tmp_path / "best" / "model.safetensors")
    for key, value in best.state_dict().items():
        assert torch.equal(value, snapshots[0.9][key])
    evals = [r for r in state.log_history if "eval_score" in r]
    assert [(r["step"], r["eval_loss"]) for r in evals] == [(1, 0.8), (2, pytest.approx(0.1)), (3, 0.5)]
    assert cfg.greater_is_better is True and _config(metric_for_best="eval_loss").greater_is_better is False

    bad = _config(max_steps=1, eval_every=1, metric_for_best="f1")
    with pytest.raises(KeyError, match="metric_for_best='f1' is not among the eval metrics"):
        Trainer(_model(), bad, DataLoader(Blobs(), batch_size=8), eval_fn=lambda m: {"score": 1.0}).train()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(precision) -> None:
    trainer = Trainer(
        _model(), _config(max_steps=30, precision=precision), DataLoader(Blobs(), batch_size=16, shuffle=True)
    )
    assert trainer.autocast_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert (trainer.scaler is not None) == (precision == "fp16")
    state = trainer.train()
    assert state.log_history[-1]["loss"] < 0.6 * state.log_history[0]["loss"]
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_compute_loss_and_tuple_batches() -> None:
    data = [(torch.randn(4), torch.tensor(i % 2)) for i in range(16)]

    def compute_loss(model, batch):
        x, y = batch
        return model.net(x).sub(nn.functional.one_hot(y, 2).float()).pow(2).mean()

    state = Trainer(_model(), _config(max_steps=4), DataLoader(data, batch_size=4), compute_loss=compute_loss).train()
    assert state.step == 4 and state.loss is not None
    with pytest.raises(TypeError, match="batches must be dicts of tensors"):
        Trainer(_model(), _config(max_steps=1), DataLoader(data, batch_size=4)).train()


def test_move_to_device_keeps_container_types() -> None:
    Pair = collections.namedtuple("Pair", "a b")
    batch = {"x": [torch.ones(1), (torch.zeros(1), "tag")], "p": Pair(torch.ones(2), 3)}
    moved = move_to_device(batch, torch.device("meta"))
    assert moved["x"][0].is_meta and moved["x"][1][0].is_meta and moved["x"][1][1] == "tag"
    assert isinstance(moved["p"], Pair) and moved["p"].a.is_meta and moved["p"].b == 3


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="exactly one of max_steps and num_epochs"):
        TrainingConfig(max_steps=3, num_epochs=1)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainingConfig(max_steps=3, precision="half")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['lr_rate'\]"):
        TrainingConfig.from_dict({"max_steps": 3, "lr_rate": 1.0})
    assert TrainingConfig.from_dict(_config().to_dict()) == _config()
    with pytest.raises(ValueError, match="scheduler was given without its optimizer"):
        model = _model()
        sched = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(model.parameters(), lr=0.1), lambda s: 1.0)
        Trainer(model, _config(), DataLoader(Blobs(), batch_size=8), scheduler=sched)
    with pytest.raises(ValueError, match="per_device_batch_size=16 but the train dataloader has batch_size=8"):
        Trainer(_model(), _config(per_device_batch_size=16), DataLoader(Blobs(), batch_size=8))

    class NoLoss(nn.Module):
        def forward(self, x, labels):
            return {"logits": x}

    with pytest.raises(ValueError, match="has no loss"):
        Trainer(
            NoLoss(),
            _config(optimizer="lamb"),
            DataLoader(Blobs(), batch_size=8),
            optimizer=torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
        ).train()


def test_tensorboard_scalars(tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _config(output_dir=str(tmp_path), max_steps=3, tensorboard=True, eval_every=3)
    Trainer(_model(), cfg, DataLoader(Blobs(), batch_size=8), eval_fn=lambda m: {"score": 0.5}).train()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/accuracy", "eval/score"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    logged = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()[:3]]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(logged)


def test_compiled_training_step_equals_eager_and_saves_plain_keys(tmp_path) -> None:
    # TrainingConfig(compile=...): the step runs through torch.compile and learns what the eager loop learns.
    runs = {}
    for compile_ in (False, "aot_eager"):
        out = tmp_path / str(compile_)
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        trainer = Trainer(_model(), _config(compile=compile_, output_dir=str(out)),
                          DataLoader(Blobs(), batch_size=8, shuffle=True))  # fmt: skip
        state = trainer.train()
        runs[compile_] = ([r["loss"] for r in state.log_history], trainer.model, out)
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert graphs == (1 if compile_ else 0)  # the compiled run traced its step once, the eager one never
    torch._dynamo.reset()
    eager_losses, eager_model, _ = runs[False]
    compiled_losses, compiled_model, out = runs["aot_eager"]
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-6)
    for a, b in zip(eager_model.parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    checkpoint = sorted(out.glob("checkpoint-*"))[-1] / "model.safetensors"
    fresh = _model(seed=1)
    load_model_weights(fresh, checkpoint)  # strict: no torch.compile "_orig_mod." prefix in the keys
    for a, b in zip(fresh.parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_an_unknown_compile_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a torch.compile backend"):
        TrainingConfig(max_steps=1, compile="inductorr")
