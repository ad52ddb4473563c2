"""LatticeBERT in transformers: each Auto class loads a saved tiny model as ours, with exactly our outputs."""

from __future__ import annotations

import os

import pytest
import torch

import alicemind.latticebert as latticebert
from alicemind.core.interop.checks import max_output_difference

os.environ["HF_HUB_OFFLINE"] = "1"
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
    import transformers

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = getattr(latticebert, ours)(latticebert.LatticeBertConfig.from_preset("latticebert.test")).eval()
    model.save_pretrained(tmp_path / "m")
    assert type(getattr(transformers, auto).from_pretrained(tmp_path / "m")).__name__ == ours
    assert transformers.AutoConfig.from_pretrained(tmp_path / "m").model_type == "latticebert"
    assert max_output_difference(model, auto, tmp_path / "m", INPUTS) == 0.0
