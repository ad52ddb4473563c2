"""StructuralLM in transformers: each Auto class loads a saved tiny model as ours, with exactly our outputs."""

from __future__ import annotations

import pytest
import torch

import alicemind.structurallm as structurallm
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


IDS = torch.tensor([[0, 7, 8, 9, 2, 1], [0, 10, 11, 12, 13, 2]])
INPUTS = dict(
    input_ids=IDS,
    bbox=torch.tensor([[[0, 0, 0, 0]] + [[60, 60, 300, 90]] * 3 + [[1000, 1000, 1000, 1000]] * 2] * 2),
    attention_mask=torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]),
)
CASES = [
    ("StructuralLMModel", "AutoModel"),
    ("StructuralLMForTokenClassification", "AutoModelForTokenClassification"),
    ("StructuralLMForQuestionAnswering", "AutoModelForQuestionAnswering"),
    ("StructuralLMForSequenceClassification", "AutoModelForSequenceClassification"),
]


@pytest.mark.parametrize(("ours", "auto"), CASES, ids=[c[1] for c in CASES])
def test_auto_class_returns_our_model_with_our_outputs(tmp_path, ours, auto):
    torch.manual_seed(0)
    model = getattr(structurallm, ours)(structurallm.StructuralLMConfig.from_preset("structurallm.test")).eval()
    assert auto_round_trip(model, auto, tmp_path / "m", INPUTS) == (ours, 0.0)
