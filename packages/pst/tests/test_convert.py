"""Module selection, Conv1D coverage, freezing and the parameter count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alicemind.pst import (
    PSTConfig,
    SparseLinear,
    convert_to_pst,
    select_modules,
    set_sparsity,
    sparse_layers,
    trainable_parameters,
)


def test_bert_base_trainable_count_equals_reference_formula(tiny_bert_config):
    from transformers import BertModel

    with torch.device("meta"):  # BERT-base shapes without allocating 110M parameters
        model = BertModel(tiny_bert_config(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                           num_attention_heads=12, intermediate_size=3072,
                                           max_position_embeddings=512), add_pooling_layer=True)  # fmt: skip
        convert_to_pst(model, ["encoder"], PSTConfig())
    count = trainable_parameters(model)
    r = 8 + 8
    per_layer = 4 * (r * (768 + 768) + 768 + 768) + 2 * (r * (768 + 3072) + 768 + 3072)
    assert per_layer == 235_008  # the reference's figure
    assert count.pst == count.trainable == 12 * per_layer == 2_820_096
    assert count.sparse_weights == 12 * (4 * 768 * 768 + 2 * 768 * 3072)
    assert len(list(sparse_layers(model))) == 72  # Q, K, V, attention output, FFN in, FFN out; pooler untouched
    assert 0.025 < count.fraction < 0.027


def test_selection_by_suffix_glob_type_and_exclude(tiny_bert_config):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    assert select_modules(model, "query") == [f"bert.encoder.layer.{i}.attention.self.query" for i in range(2)]
    assert len(select_modules(model, "*.attention.*")) == 8
    assert len(select_modules(model, nn.Linear)) == 14  # 12 encoder + pooler + classifier
    assert len(select_modules(model, "bert.encoder", exclude_modules=["intermediate.dense"])) == 10
    assert "classifier" not in select_modules(model, "bert")


def test_only_pst_tensors_and_named_heads_train(tiny_bert_config):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    convert_to_pst(model, "bert.encoder", PSTConfig(weight_rank=4, mask_rank=4), trainable_modules=["classifier"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trainable
    others = trainable - {"classifier.weight", "classifier.bias"}
    assert others and all(n.rsplit(".", 1)[1].startswith(("weight_U", "weight_V", "mask_scores_")) for n in others)
    count = trainable_parameters(model)
    assert count.trainable == count.pst + 32 * 3 + 3


def test_unknown_target_lists_module_names(tiny_bert_config):
    from transformers import BertModel

    model = BertModel(tiny_bert_config())
    with pytest.raises(ValueError) as err:
        convert_to_pst(model, ["attention.self.query", "c_attn"])
    message = str(err.value)
    assert "'c_attn' matched no linear" in message
    assert "encoder.layer.0.attention.self.query" in message and "pooler.dense" in message
    assert not any(True for _ in sparse_layers(model))  # nothing half-converted


def test_unknown_trainable_module_is_an_error(tiny_bert_config):
    from transformers import BertModel

    with pytest.raises(ValueError, match="trainable_modules"):
        convert_to_pst(BertModel(tiny_bert_config()), "encoder", PSTConfig(4, 1.0, 4), trainable_modules="head")


def test_rank_larger_than_a_selected_matrix_names_it():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4))
    with pytest.raises(ValueError, match=r"cannot convert 1: .*weight_rank=8 exceeds the matrix \(4 x 16\)"):
        convert_to_pst(model)


def test_final_sparsity_of_one_is_rejected():
    model = convert_to_pst(nn.Sequential(nn.Linear(16, 16)), config=PSTConfig(4, 1.0, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        set_sparsity(model, 1.0)
    with pytest.raises(ValueError, match="1.0 prunes every weight"):
        PSTConfig(final_sparsity=1.0)


def test_gpt2_conv1d_is_covered_and_starts_equal(tiny_gpt2_config):
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(tiny_gpt2_config()).eval()
    ids = torch.randint(0, 120, (2, 9))
    with torch.no_grad():
        before = model(ids).logits
    convert_to_pst(model, "transformer.h", PSTConfig(weight_rank=4, mask_rank=4))
    layers = dict(sparse_layers(model))
    assert len(layers) == 8  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block (the original's split q/k/v: 6)
    assert {layer.source_layout for layer in layers.values()} == {"conv1d"}
    assert layers["transformer.h.0.attn.c_attn"].weight.shape == (96, 32)  # stored in Linear layout
    with torch.no_grad():
        after = model(ids).logits
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    assert not model.lm_head.weight.requires_grad  # tied to the embeddings: frozen, as in the original


def test_sparse_linear_is_not_converted_twice():
    model = convert_to_pst(nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16)), config=PSTConfig(4, 1.0, 4))
    assert all(isinstance(m, SparseLinear) for m in (model[0], model[2]))
    with pytest.raises(ValueError, match="no nn.Linear or Conv1D"):
        convert_to_pst(model)
