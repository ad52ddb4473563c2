"""LR schedules: values at chosen steps against hand-computed numbers, and state_dict round trips."""

from __future__ import annotations

import math

import pytest
import torch

from alicemind.core.ops import build_scheduler


def _lrs(name: str, steps: list[int], *, lr: float = 1.0, **kwargs) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_scheduler(opt, name, **kwargs)
    out, done = [], 0
    for s in steps:
        for _ in range(s - done):
            opt.step()
            sched.step()
        done = s
        out.append(opt.param_groups[0]["lr"])
    return out


def test_linear_warmup_then_decay_to_zero() -> None:
    # warmup 4 of 20: 0, 0.25 ... 1 at step 4, then (20 - s) / 16, and 0 from step 20 on.
    got = _lrs("linear", [0, 1, 3, 4, 12, 19, 20, 25], lr=2.0, num_training_steps=20, warmup_steps=4)
    assert got == pytest.approx([0.0, 0.5, 1.5, 2.0, 1.0, 0.125, 0.0, 0.0])


def test_warmup_ratio_rounds_up() -> None:
    # ratio 0.1 of 25 steps -> ceil(2.5) = 3 warm-up steps.
    assert _lrs("constant_with_warmup", [1, 2, 3, 10], num_training_steps=25, warmup_ratio=0.1) == pytest.approx(
        [1 / 3, 2 / 3, 1.0, 1.0]
    )


def test_polynomial_power() -> None:
    got = _lrs("polynomial", [2, 6, 10], num_training_steps=10, warmup_steps=2, power=2.0)
    assert got == pytest.approx([1.0, (4 / 8) ** 2, 0.0])


def test_inverse_sqrt_noam_peaks_at_lr() -> None:
    # lr * min(s^-0.5, s * w^-1.5) * sqrt(w) with w = 4: s=1 -> 1/4, s=4 -> 1 (peak), s=16 -> 0.5, s=100 -> 0.2.
    for name in ("inverse_sqrt", "noam"):
        got = _lrs(name, [0, 1, 2, 4, 16, 100], lr=3e-4, num_training_steps=200, warmup_steps=4)
        assert got == pytest.approx([0.0, 0.75e-4, 1.5e-4, 3e-4, 1.5e-4, 0.6e-4])
    with pytest.raises(ValueError, match="warmup_steps > 0"):
        _lrs("noam", [1], num_training_steps=10)


def test_cosine() -> None:
    got = _lrs("cosine", [2, 4, 6, 8, 10, 12], num_training_steps=10, warmup_steps=2)
    expected = [1.0] + [0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in (4, 6, 8)] + [0.0, 0.0]
    assert got == pytest.approx(expected)
    assert got[2] == pytest.approx(0.5)


def test_group_lrs_scale_and_state_dict_round_trip() -> None:
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1], "lr": 1.0}, {"params": [p2], "lr": 0.1}], lr=1.0)
    sched = build_scheduler(opt, "linear", num_training_steps=10, warmup_steps=2)
    for _ in range(5):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5 / 8, 0.0625])
    state = sched.state_dict()

    opt2 = torch.optim.SGD([{"params": [p1], "lr": 1.0}, {"params": [p2], "lr": 0.1}], lr=1.0)
    sched2 = build_scheduler(opt2, "linear", num_training_steps=10, warmup_steps=2)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx([4 / 8, 0.05])


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown scheduler 'step'.*linear"):
        _lrs("step", [1], num_training_steps=10)
    with pytest.raises(ValueError, match="not both"):
        _lrs("linear", [1], num_training_steps=10, warmup_steps=1, warmup_ratio=0.1)
    with pytest.raises(ValueError, match="num_training_steps"):
        _lrs("linear", [1], num_training_steps=0)
