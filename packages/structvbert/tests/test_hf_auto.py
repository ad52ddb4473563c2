"""StructVBERT in transformers: each Auto class loads a saved tiny model as ours, with exactly our outputs."""

from __future__ import annotations

import pytest
import torch

import alicemind.structvbert as structvbert
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


TINY = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=32, visual_feat_dim=16, max_objects=8, num_object_labels=10,
            num_attribute_labels=6, answers=["yes", "no", "red", "blue", "two"])  # fmt: skip
CASES = [
    ("StructVBertModel", "AutoModel"),
    ("StructVBertForVQA", "AutoModelForVisualQuestionAnswering"),
]


@pytest.mark.parametrize(("ours", "auto"), CASES, ids=[c[1] for c in CASES])
def test_auto_class_returns_our_model_with_our_outputs(tmp_path, ours, auto):
    torch.manual_seed(0)
    model = getattr(structvbert, ours)(structvbert.StructVBertConfig.from_dict(TINY)).eval()
    inputs = dict(
        input_ids=torch.tensor([[2, 7, 8, 9, 3, 0], [2, 10, 11, 12, 13, 3]]),
        visual_feats=torch.randn(2, 5, 16),
        visual_boxes=torch.rand(2, 5, 4),
        attention_mask=torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]),
    )
    assert auto_round_trip(model, auto, tmp_path / "m", inputs) == (ours, 0.0)
