"""merge_pst: the plain model computes what the PST model computed, and loads without PST code."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from alicemind.core.checkpoint import load_safetensors
from alicemind.pst import PSTConfig, convert_to_pst, merge_pst, save_merged, set_sparsity, sparse_layers


def test_merged_bert_equals_pst_model_and_loads_into_plain_architecture(tmp_path, tiny_bert_config, randomize_pst):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()
    convert_to_pst(model, "bert.encoder", PSTConfig(weight_rank=4, mask_rank=4), trainable_modules="classifier")
    randomize_pst(model)
    set_sparsity(model, 0.75)
    ids = torch.randint(0, 120, (3, 11))
    with torch.no_grad():
        expected = model(ids).logits
    report = merge_pst(model)
    assert not any(True for _ in sparse_layers(model))
    with torch.no_grad():
        merged = model(ids).logits
    torch.testing.assert_close(merged, expected, atol=1e-6, rtol=0)
    assert len(report.layers) == 12
    for layer in report.layers:
        assert layer.zeros == int(layer.numel * 0.75)  # zeros kept in the dense weight
    save_merged(model, tmp_path / "merged", report)
    loaded = BertForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected, atol=1e-6, rtol=0)
    query = loaded.bert.encoder.layer[0].attention.self.query.weight
    assert int((query == 0).sum()) == int(query.numel() * 0.75)
    saved = json.loads((tmp_path / "merged" / "pst_sparsity.json").read_text())
    assert saved["sparsity"] == pytest.approx(0.75)


def test_merged_gpt2_goes_back_to_conv1d(tmp_path, tiny_gpt2_config, randomize_pst):
    from transformers import GPT2LMHeadModel
    from transformers.pytorch_utils import Conv1D

    model = GPT2LMHeadModel(tiny_gpt2_config()).eval()
    convert_to_pst(model, "transformer.h", PSTConfig(weight_rank=4, mask_rank=4))
    randomize_pst(model)
    set_sparsity(model, 0.9)
    ids = torch.randint(0, 120, (2, 8))
    with torch.no_grad():
        expected = model(ids).logits
    merge_pst(model)
    assert isinstance(model.transformer.h[0].attn.c_attn, Conv1D)
    save_merged(model, tmp_path / "gpt2")
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected, atol=1e-6, rtol=0)


def test_generic_module_saved_as_safetensors(tmp_path, randomize_pst):
    def build():
        return nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 12))

    model = convert_to_pst(build(), config=PSTConfig(weight_rank=3, mask_rank=3))
    randomize_pst(model)
    set_sparsity(model, 0.5)
    x = torch.randn(5, 12)
    with torch.no_grad():
        expected = model(x)
    save_merged(model := _merged(model), tmp_path / "plain")
    plain = build()
    plain.load_state_dict(load_safetensors(tmp_path / "plain" / "model.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), expected, atol=1e-6, rtol=0)


def _merged(model):
    merge_pst(model)
    return model


def test_save_before_merge_and_merge_without_pst_are_errors(tmp_path):
    model = convert_to_pst(nn.Sequential(nn.Linear(8, 8)), config=PSTConfig(2, 1.0, 2))
    with pytest.raises(ValueError, match="merge_pst"):
        save_merged(model, tmp_path)
    with pytest.raises(ValueError, match="no SparseLinear"):
        merge_pst(nn.Sequential(nn.Linear(8, 8)))
