"""VECO NLU folders in transformers: config.json says "xlm-roberta" and the keys are XLM-R's, so the Auto classes
load them as the XLM-R peer, with our outputs."""

from __future__ import annotations

import pytest
import torch

import alicemind.veco as veco
from alicemind.core.interop.checks import max_output_difference


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
INPUTS = dict(input_ids=IDS, attention_mask=(IDS != 1).long())
CASES = [
    ("VecoModel", "AutoModel", "XLMRobertaModel"),
    ("VecoForSequenceClassification", "AutoModelForSequenceClassification", "XLMRobertaForSequenceClassification"),
    ("VecoForTokenClassification", "AutoModelForTokenClassification", "XLMRobertaForTokenClassification"),
    ("VecoForQuestionAnswering", "AutoModelForQuestionAnswering", "XLMRobertaForQuestionAnswering"),
]


@pytest.mark.parametrize(("ours", "auto", "peer"), CASES, ids=[c[1] for c in CASES])
def test_auto_class_loads_the_xlmr_peer_with_our_outputs(tmp_path, ours, auto, peer):
    import transformers

    torch.manual_seed(0)
    model = getattr(veco, ours)(veco.VecoConfig.from_preset("veco.tiny")).eval()
    model.save_pretrained(tmp_path / "m")
    assert type(getattr(transformers, auto).from_pretrained(tmp_path / "m")).__name__ == peer
    assert max_output_difference(model, auto, tmp_path / "m", INPUTS) < 1e-5
