"""Release loading (every key accounted for), our forward against a reference written from the description,
the answer-table remap, the padding_idx quirk, our own save/load."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from structvbert_testing import release_state_dict, tiny_config, write_release

from alicemind.core.checkpoint import CheckpointError, CheckpointMismatchError
from alicemind.structvbert import StructVBertForNLVR2, StructVBertForPreTraining, StructVBertForVQA, StructVBertModel
from alicemind.structvbert.convert import remap_answer_rows


def reference_forward(s, input_ids, mask, feats, boxes, heads=4, eps=1e-12):
    """The description, step by step: text = LN(word + position + type); regions = (LN(fc(f)) + LN(fc(b)))/2;
    [regions] + [text] through post-LN BERT layers (erf GeLU, additive -10000 on padded text, regions attended);
    pooler = tanh(dense(first text token))."""

    def lin(x, p):
        return x @ s[f"{p}.weight"].T + s[f"{p}.bias"]

    def ln(x, p):
        return F.layer_norm(x, x.shape[-1:], s[f"{p}.weight"], s[f"{p}.bias"], eps)

    b, length = input_ids.shape
    pos = torch.arange(length)
    text = s["bert.embeddings.word_embeddings.weight"][input_ids] + s["bert.embeddings.position_embeddings.weight"][pos]
    text = ln(text + s["bert.embeddings.token_type_embeddings.weight"][0], "bert.embeddings.LayerNorm")
    v = "bert.encoder.visn_fc"
    regions = (
        ln(lin(feats, f"{v}.visn_fc"), f"{v}.visn_layer_norm") + ln(lin(boxes, f"{v}.box_fc"), f"{v}.box_layer_norm")
    ) / 2
    x = torch.cat([regions, text], 1)
    full_mask = torch.cat([torch.ones(b, feats.shape[1], dtype=mask.dtype), mask], 1)
    additive = (1.0 - full_mask[:, None, None, :].to(x.dtype)) * -10000.0
    hidden = x.shape[-1]
    d = hidden // heads
    i = 0
    while f"bert.encoder.layer.{i}.attention.self.query.weight" in s:
        p = f"bert.encoder.layer.{i}"

        def split(t):
            return t.view(b, -1, heads, d).transpose(1, 2)

        q, k, val = (split(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + additive
        ctx = (scores.softmax(-1) @ val).transpose(1, 2).reshape(b, -1, hidden)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        inter = F.gelu(lin(x, f"{p}.intermediate.dense"))
        x = ln(lin(inter, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        i += 1
    text_out = x[:, feats.shape[1] :]
    return text_out, x[:, : feats.shape[1]], torch.tanh(lin(text_out[:, 0], "bert.pooler.dense"))


def _inputs(seed=1, regions=5):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (2, 7), generator=g)
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    ids[1, 5:] = 0
    feats = torch.randn(2, regions, 16, generator=g, dtype=torch.float64)
    boxes = torch.rand(2, regions, 4, generator=g, dtype=torch.float64)
    return ids, mask, feats, boxes


def test_release_loads_every_key_and_matches_reference(tmp_path):
    state = release_state_dict()
    write_release(tmp_path / "pretrained_model", state)
    model = StructVBertForPreTraining.from_pretrained(
        tmp_path / "pretrained_model", answers=[f"a{i}" for i in range(7)]
    )
    assert model.source_format == "structvbert-release"
    ours = model.state_dict()
    # Every released tensor landed somewhere, bit for bit (the decoder is the tied word table).
    assert ours["bert.visual.visn_fc.weight"].equal(state["bert.encoder.visn_fc.visn_fc.weight"])
    assert ours["bert.encoder.layers.1.ffn.fc_out.bias"].equal(state["bert.encoder.layer.1.output.dense.bias"])
    assert ours["obj_predict_head.norm.weight"].equal(state["obj_predict_head.transform.LayerNorm.weight"])
    assert ours["answer_head.3.weight"].equal(state["answer_head.logit_fc.3.weight"])
    assert ours["cls_predictions.bias"].equal(state["cls.predictions.bias"])
    assert (
        sum(v.numel() for v in state.values()) - state["cls.predictions.decoder.weight"].numel()
        == model.num_parameters()
    )

    encoder = StructVBertModel.from_pretrained(tmp_path / "pretrained_model").double().eval()
    ids, mask, feats, boxes = _inputs()
    out = encoder(ids, feats, boxes, attention_mask=mask)
    ref_text, ref_regions, ref_pooled = reference_forward(
        {k: v.double() for k, v in state.items()}, ids, mask, feats, boxes
    )
    assert (out.last_hidden_state - ref_text)[mask.bool()].abs().max() < 1e-6
    assert (out.visual_hidden_state - ref_regions).abs().max() < 1e-6
    assert (out.pooler_output - ref_pooled).abs().max() < 1e-6


def test_legacy_names_module_prefix_and_gamma_beta(tmp_path):
    state = {f"module.{k}": v for k, v in release_state_dict(gamma_beta=True).items()}
    write_release(tmp_path / "r", state)
    model = StructVBertModel.from_pretrained(tmp_path / "r")
    assert model.state_dict()["embeddings.norm.weight"].equal(state["module.bert.embeddings.LayerNorm.gamma"])


def test_unknown_or_missing_keys_are_errors(tmp_path):
    state = release_state_dict()
    state["bert.encoder.mystery.weight"] = torch.zeros(2)
    write_release(tmp_path / "extra", state)
    with pytest.raises(CheckpointError, match="bert.encoder.mystery.weight"):
        StructVBertModel.from_pretrained(tmp_path / "extra")
    state = release_state_dict()
    del state["bert.encoder.layer.1.attention.self.key.bias"]
    write_release(tmp_path / "missing", state)
    with pytest.raises(CheckpointMismatchError, match=r"encoder\.layers\.1\.self_attn\.k_proj\.bias"):
        StructVBertModel.from_pretrained(tmp_path / "missing")


def test_answer_table_remap_moves_the_right_rows(tmp_path):
    table = ["yes", "no", "2", "gray", "man", "cat", "blue"]  # the pre-trained head's answer order (all_ans.json)
    state = release_state_dict(num_answers=len(table))
    write_release(tmp_path / "r", state)
    all_ans = tmp_path / "all_ans.json"
    all_ans.write_text(__import__("json").dumps([{"ans": a, "dsets": ["vqa"]} for a in table]))
    answers = ["Cat", "two", "unseen", "the man", "grey", "no."]
    vqa = StructVBertForVQA.from_pretrained(tmp_path / "r", answers=answers, answer_table=all_ans)
    w, b = vqa.logit_fc[3].weight, vqa.logit_fc[3].bias
    src_w, src_b = state["answer_head.logit_fc.3.weight"], state["answer_head.logit_fc.3.bias"]
    for row, source in ((0, 5), (1, 2), (3, 4), (4, 3), (5, 1)):
        assert w[row].equal(src_w[source]) and b[row] == src_b[source]
    assert not w[2].any() and b[2] == 0  # unknown answer: zero row
    assert vqa.logit_fc[0].weight.equal(state["answer_head.logit_fc.0.weight"])
    # The function alone, on a hand-made table.
    weight, bias, found = remap_answer_rows(
        torch.arange(6.0).view(3, 2), torch.tensor([10.0, 11, 12]), ["a", "b", "c"], ["c", "x", "a"]
    )
    assert found == 2 and weight.tolist() == [[4, 5], [0, 0], [0, 1]] and bias.tolist() == [12, 0, 10]


def test_finetuned_vqa_file_and_nlvr2_head_check(tmp_path):
    state = release_state_dict()
    finetuned = {f"lxrt_encoder.model.{k}": v for k, v in state.items() if k.startswith("bert.")}
    finetuned |= {k.replace("answer_head.", ""): v for k, v in state.items() if k.startswith("answer_head.")}
    write_release(tmp_path / "out", finetuned, name="BEST.pth")
    answers = [f"a{i}" for i in range(7)]
    vqa = StructVBertForVQA.from_pretrained(tmp_path / "out" / "BEST.pth", answers=answers)
    assert vqa.source_format == "structvbert-finetuned"
    assert vqa.logit_fc[3].bias.equal(state["answer_head.logit_fc.3.bias"])
    with pytest.raises(CheckpointError, match="VQA head"):
        StructVBertForNLVR2.from_pretrained(tmp_path / "out" / "BEST.pth")


def test_hostile_pickle_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = write_release(tmp_path / "bad", {})
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"bert.x": Evil()}))
    with pytest.raises(CheckpointError):
        StructVBertModel.from_pretrained(folder)


def test_padding_idx_quirk_and_our_round_trip(tmp_path):
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = StructVBertModel(config)
    ids, mask, feats, boxes = _inputs()
    model(ids, feats.float(), boxes.float(), attention_mask=mask).pooler_output.sum().backward()
    emb = model.embeddings
    assert not emb.position_embeddings.weight.grad[0].any() and emb.position_embeddings.weight.grad[1].any()
    assert not emb.token_type_embeddings.weight.grad[0].any()
    plain = StructVBertModel(tiny_config(embedding_padding_idx=False))
    plain(ids, feats.float(), boxes.float()).pooler_output.sum().backward()
    assert plain.embeddings.position_embeddings.weight.grad[0].any()

    model.save_pretrained(tmp_path / "ours")
    back = StructVBertModel.from_pretrained(tmp_path / "ours").eval()
    model.eval()
    assert back.source_format == "alicemind"
    x = (ids, feats.float(), boxes.float())
    assert torch.equal(back(*x, attention_mask=mask).pooler_output, model(*x, attention_mask=mask).pooler_output)
    # An encoder folder into a task model: the head starts fresh, the encoder is the same.
    vqa = StructVBertForVQA.from_pretrained(tmp_path / "ours", answers=["x", "y"])
    assert vqa.bert.pooler.dense.weight.equal(model.pooler.dense.weight)
    with pytest.raises(ValueError, match="answer_table= remaps the released"):
        StructVBertForVQA.from_pretrained(tmp_path / "ours", answers=["x"], answer_table=["x"])
    with pytest.raises(ValueError, match="dimension 7"):
        model(ids, torch.zeros(2, 3, 7), torch.zeros(2, 3, 4))
