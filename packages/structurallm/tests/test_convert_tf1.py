"""The released TF1 layout loads with every variable accounted for; its forward equals the reference embedding
sum; LayoutLM computes the same function where its tables can hold ours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from structurallm_testing import released_variables

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.checkpoint.tf1_writer import save_tf_checkpoint
from alicemind.structurallm import (
    StructuralLMConfig,
    StructuralLMForPreTraining,
    StructuralLMForTokenClassification,
    StructuralLMModel,
)
from alicemind.structurallm.convert import to_layoutlm_state_dict


def _release(tmp_path, cfg, **kwargs):
    folder = tmp_path / "structural_lm_models"
    tensors = released_variables(cfg, **kwargs)
    save_tf_checkpoint(folder / "model.ckpt-160000", tensors)
    (folder / "checkpoint").write_text('model_checkpoint_path: "/old/place/model.ckpt-160000"\n')
    return folder, tensors


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_released_layout_loads_and_embeddings_equal_the_reference_sum(tmp_path):
    cfg = StructuralLMConfig.from_preset("structurallm.test")
    folder, tf = _release(tmp_path, cfg)
    model = StructuralLMModel.from_pretrained(tmp_path, config=cfg).eval()  # found inside the tarball folder
    assert model.source_format == "structurallm-tf1"
    q = tf["bert/encoder/layer_1/attention/self/query/kernel"]
    np.testing.assert_array_equal(model.encoder.layers[1].self_attn.q_proj.weight.detach().numpy(), q.T)
    ids = torch.tensor([[0, 40, 41, 42, 2, 1, 1]])
    bbox = torch.tensor([[[0, 0, 0, 0], [10, 20, 300, 40], [10, 20, 300, 40], [500, 7, 999, 1000],
                          [1000, 1000, 1000, 1000], [0, 0, 0, 0], [0, 0, 0, 0]]])  # fmt: skip
    pos_bbox = torch.tensor([[0, 1, 1, 2, 0, 0, 0]])
    with torch.no_grad():
        ours = model.embeddings(ids, bbox, pos_bbox).numpy()
    # Reference (models-multimodal.md 2.1, errata 3): word + position rows 2..L+1 for every slot (padding too) +
    # x0 + y0 + x1 + y1 tables + bbox_embeddings[pos_bbox]; no token type; LayerNorm eps 1e-5.
    e, b = "bert/embeddings", bbox[0].numpy()
    ref = (tf[f"{e}/word_embeddings"][ids[0].numpy()] + tf[f"{e}/position_embeddings"][2 : 2 + ids.shape[1]]
           + tf[f"{e}/pos_x0_embeddings"][b[:, 0]] + tf[f"{e}/pos_y0_embeddings"][b[:, 1]]
           + tf[f"{e}/pos_x1_embeddings"][b[:, 2]] + tf[f"{e}/pos_y1_embeddings"][b[:, 3]]
           + tf[f"{e}/bbox_embeddings"][pos_bbox[0].numpy()]).astype(np.float64)  # fmt: skip
    ref = _layer_norm(ref, tf[f"{e}/LayerNorm/gamma"], tf[f"{e}/LayerNorm/beta"], 1e-5)
    assert np.abs(ours[0] - ref).max() < 1e-6


def test_every_variable_is_accounted_for(tmp_path):
    cfg = StructuralLMConfig.from_preset("structurallm.test", num_labels=5)
    folder, tf = _release(tmp_path, cfg, head="squad")
    tagger = StructuralLMForTokenClassification.from_pretrained(folder, config=cfg)
    np.testing.assert_array_equal(tagger.classifier.weight.detach().numpy(), tf["cls/squad/output_weights"])
    mlm = StructuralLMForPreTraining.from_pretrained(folder, config=cfg)  # MLM head fresh, tied to the table
    assert mlm.cls_predictions.decoder.weight is mlm.bert.embeddings.text.word_embeddings.weight
    prefix = folder / "model.ckpt-160000"
    extra = dict(tf, **{"bert/encoder/layer_0/surprise": np.zeros(3, np.float32)})
    save_tf_checkpoint(prefix, extra)
    with pytest.raises(CheckpointError, match="'bert/encoder/layer_0/surprise'.*not a StructuralLM variable"):
        StructuralLMModel.from_pretrained(folder, config=cfg)
    save_tf_checkpoint(prefix, {k: v for k, v in tf.items() if k != "bert/embeddings/pos_y1_embeddings"})
    with pytest.raises(CheckpointError, match="missing variable 'bert/embeddings/pos_y1_embeddings'"):
        StructuralLMModel.from_pretrained(folder, config=cfg)
    wrong = dict(tf, **{"bert/pooler/dense/bias": np.zeros(7, np.float32)})
    save_tf_checkpoint(prefix, wrong)
    with pytest.raises(CheckpointError, match="'bert/pooler/dense/bias' has shape \\(7,\\)"):
        StructuralLMModel.from_pretrained(folder, config=cfg)


def test_our_folder_round_trips(tmp_path):
    cfg = StructuralLMConfig.from_preset("structurallm.test", num_labels=3)
    folder, _ = _release(tmp_path, cfg)
    model = StructuralLMModel.from_pretrained(folder, config=cfg)
    model.save_pretrained(tmp_path / "ours")
    again = StructuralLMForTokenClassification.from_pretrained(tmp_path / "ours")  # encoder folder -> tagger
    assert again.source_format == "alicemind" and again.config.layer_norm_eps == 1e-5
    torch.testing.assert_close(again.bert.embeddings.layout.y1_embeddings.weight,
                               model.embeddings.layout.y1_embeddings.weight, rtol=0, atol=0)  # fmt: skip


def test_hidden_states_agree_with_transformers_layoutlm():
    import transformers  # the test extra

    torch.manual_seed(0)
    cfg = StructuralLMConfig.from_preset("structurallm.test", use_bbox_pos=False, hidden_dropout_prob=0.0)
    model = StructuralLMModel(cfg).eval()
    layout = model.embeddings.layout
    with torch.no_grad():  # LayoutLM shares one x and one y table: make ours equal
        layout.x1_embeddings.weight.copy_(layout.x0_embeddings.weight)
        layout.y1_embeddings.weight.copy_(layout.y0_embeddings.weight)
    state, fields = to_layoutlm_state_dict(model)
    peer = transformers.LayoutLMModel(transformers.LayoutLMConfig(**fields, hidden_dropout_prob=0.0,
                                                                  attention_probs_dropout_prob=0.0)).eval()  # fmt: skip
    peer.load_state_dict(state, strict=True)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(4, cfg.vocab_size, (2, 9), generator=gen)
    corners = torch.randint(0, 500, (2, 9, 2), generator=gen)
    bbox = torch.cat([corners, corners + torch.randint(0, 500, (2, 9, 2), generator=gen)], -1)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    ids[1, 6:] = cfg.pad_token_id
    with torch.no_grad():
        ours = model(ids, bbox=bbox, attention_mask=mask)
        theirs = peer(input_ids=ids, bbox=bbox, attention_mask=mask, position_ids=torch.arange(9)[None] + 2)
    real = mask.bool()
    diff = (ours.last_hidden_state[real] - theirs.last_hidden_state[real]).abs().max().item()
    assert diff < 1e-5
    assert (ours.pooler_output - theirs.pooler_output).abs().max().item() < 1e-5


def test_a_release_without_the_bbox_table(tmp_path, caplog):
    cfg = StructuralLMConfig.from_preset("structurallm.test")
    tf = released_variables(cfg)
    del tf["bert/embeddings/bbox_embeddings"]
    save_tf_checkpoint(tmp_path / "model.ckpt-160000", tf)
    sizes = dict(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=66,
        bbox_vocab_size=21,
    )  # the test preset's, over the released preset
    model = StructuralLMModel.from_pretrained(tmp_path, **sizes)
    assert model.config.use_bbox_pos is False and model.embeddings.bbox_embeddings is None
    tagger = StructuralLMForTokenClassification.from_pretrained(tmp_path, config=cfg)  # asked for: starts fresh
    assert tagger.config.use_bbox_pos and tagger.bert.embeddings.bbox_embeddings.weight.shape == (21, 32)
    assert "starts from random weights" in caplog.text
