"""NLU parity: a tiny random VECO model converted both ways with transformers' XLM-R gives the same outputs."""

from __future__ import annotations

import pytest
import torch
import transformers
from veco_testing import random_batch, tiny_config

from alicemind.veco import (
    VecoForMultipleChoice,
    VecoForQuestionAnswering,
    VecoForSequenceClassification,
    VecoForTokenClassification,
    VecoModel,
)

TOL = 1e-5


def _hf_config(config, **extra):
    return transformers.XLMRobertaConfig(**{k: v for k, v in config.to_dict().items() if k != "model_type"}, **extra)


def _real(x, mask):
    return x[mask.bool()]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    model = VecoModel(tiny_config()).eval()
    path = model.save_pretrained(tmp_path_factory.mktemp("veco") / "nlu")
    return model, path


def test_save_pretrained_loads_in_transformers_xlmroberta(saved_model):
    model, path = saved_model
    hf = transformers.XLMRobertaModel.from_pretrained(path).eval()
    ids, mask = random_batch(model.config.vocab_size)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask, output_hidden_states=True)
        theirs = hf(ids, attention_mask=mask, output_hidden_states=True)
    assert (_real(ours.last_hidden_state, mask) - _real(theirs.last_hidden_state, mask)).abs().max() < TOL
    for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True):
        assert (_real(a, mask) - _real(b, mask)).abs().max() < TOL
    assert (ours.pooler_output - theirs.pooler_output).abs().max() < TOL


def test_transformers_folder_loads_in_ours(tmp_path):
    torch.manual_seed(1)
    config = tiny_config()
    hf = transformers.XLMRobertaModel(_hf_config(config)).eval()
    hf.save_pretrained(tmp_path / "hf")
    model = VecoModel.from_pretrained(tmp_path / "hf").eval()
    assert model.source_format == "huggingface-xlmr"
    ids, mask = random_batch(config.vocab_size, seed=3)
    with torch.no_grad():
        diff = (_real(model(ids, mask).last_hidden_state, mask) - _real(hf(ids, mask).last_hidden_state, mask)).abs()
    assert diff.max() < TOL
    # Padding positions too: positions are padding-aware like RoBERTa's, so the whole tensor agrees.
    with torch.no_grad():
        assert (model(ids, mask).last_hidden_state - hf(ids, mask).last_hidden_state).abs().max() < TOL


@pytest.mark.parametrize(
    ("ours_cls", "hf_cls", "extra"),
    [
        (VecoForSequenceClassification, transformers.XLMRobertaForSequenceClassification, {"num_labels": 3}),
        # num_labels=3 is a classification setting; QA keeps its 2 outputs (transformers sizes qa_outputs by it).
        (VecoForQuestionAnswering, transformers.XLMRobertaForQuestionAnswering, {"num_labels": 3}),
        (VecoForTokenClassification, transformers.XLMRobertaForTokenClassification, {"num_labels": 5}),
    ],
)
def test_heads_agree_both_ways(tmp_path, ours_cls, hf_cls, extra):
    torch.manual_seed(2)
    config = tiny_config(**extra)
    model = ours_cls(config).eval()
    hf = hf_cls.from_pretrained(model.save_pretrained(tmp_path / "ours")).eval()
    ids, mask = random_batch(config.vocab_size, seed=5)
    with torch.no_grad():
        ours, theirs = model(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask)
    if ours_cls is VecoForQuestionAnswering:
        assert (ours[0] - theirs.start_logits).abs().max() < TOL
        assert (ours[1] - theirs.end_logits).abs().max() < TOL
    else:
        assert (ours - theirs.logits).abs().max() < TOL
    # ... and back: transformers' folder into ours.
    hf.save_pretrained(tmp_path / "hf")
    again = ours_cls.from_pretrained(tmp_path / "hf").eval()
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_multiple_choice_agrees(tmp_path):
    torch.manual_seed(3)
    model = VecoForMultipleChoice(tiny_config()).eval()
    hf = transformers.XLMRobertaForMultipleChoice.from_pretrained(model.save_pretrained(tmp_path / "m")).eval()
    ids, mask = random_batch(model.config.vocab_size, batch=4, seed=7)
    ids, mask = ids.view(2, 2, -1), mask.view(2, 2, -1)
    with torch.no_grad():
        assert (model(ids, mask).logits - hf(ids, attention_mask=mask).logits).abs().max() < TOL


def test_sequence_classification_loss_matches_transformers(tmp_path):
    torch.manual_seed(4)
    model = VecoForSequenceClassification(tiny_config(num_labels=3)).eval()
    hf = transformers.XLMRobertaForSequenceClassification.from_pretrained(model.save_pretrained(tmp_path / "c"))
    ids, mask = random_batch(model.config.vocab_size, seed=9)
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        assert abs(model(ids, mask, labels=labels).loss.item() - hf.eval()(ids, mask, labels=labels).loss.item()) < TOL
