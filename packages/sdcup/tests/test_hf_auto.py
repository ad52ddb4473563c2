"""SDCUP in transformers: AutoModel loads a saved tiny encoder as ours, with exactly our outputs (the
pre-training model is registered too; its inputs are the SQL-structure targets, so only the encoder is run)."""

from __future__ import annotations

import pytest
import torch

import alicemind.sdcup as sdcup
from alicemind.core.interop.checks import auto_round_trip


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    # Per test, not at import: a module-level setting leaked into the download tests of the same session.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


INPUTS = dict(
    input_ids=torch.tensor([[2, 7, 8, 3, 9, 10, 3, 0], [2, 11, 12, 13, 3, 14, 15, 3]]),
    token_type_ids=torch.tensor([[1, 1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 2, 2, 2]]),  # question 1, schema 2
)
CASES = [("SdcupEncoder", "AutoModel")]


@pytest.mark.parametrize(("ours", "auto"), CASES, ids=[c[1] for c in CASES])
def test_auto_class_returns_our_model_with_our_outputs(tmp_path, ours, auto):
    torch.manual_seed(0)
    model = getattr(sdcup, ours)(sdcup.SdcupConfig.from_preset("sdcup.test")).eval()
    assert auto_round_trip(model, auto, tmp_path / "m", INPUTS) == (ours, 0.0)
