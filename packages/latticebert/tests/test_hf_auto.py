"""LatticeBERT in transformers: each Auto class loads a saved tiny model as ours, with exactly our outputs."""

from __future__ import annotations

import pytest
import torch

import alicemind.latticebert as latticebert
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


IDS = torch.tensor([[2, 7, 8, 9, 3, 0], [2, 10, 11, 12, 13, 3]])
INPUTS = dict(
    input_ids=IDS,
    attention_mask=(IDS != 0).long(),
    lattice_starts=torch.tensor([[0, 1, 1, 2, 3, 0], [0, 1, 2, 2, 4, 5]]),  # a word unit spans two characters
    lattice_ends=torch.tensor([[0, 1, 2, 2, 3, 0], [0, 1, 3, 2, 4, 5]]),
)
CASES = [
    ("LatticeBertModel", "AutoModel"),
    ("LatticeBertForPreTraining", "AutoModelForPreTraining"),
    ("LatticeBertForSequenceClassification", "AutoModelForSequenceClassification"),
    ("LatticeBertForQuestionAnswering", "AutoModelForQuestionAnswering"),
]


@pytest.mark.parametrize(("ours", "auto"), CASES, ids=[c[1] for c in CASES])
def test_auto_class_returns_our_model_with_our_outputs(tmp_path, ours, auto):
    torch.manual_seed(0)
    model = getattr(latticebert, ours)(latticebert.LatticeBertConfig.from_preset("latticebert.test")).eval()
    assert auto_round_trip(model, auto, tmp_path / "m", INPUTS) == (ours, 0.0)
