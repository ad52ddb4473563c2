"""Released UER layout -> SdcupEncoder: every key accounted for, outputs equal UER's formulas."""

from __future__ import annotations

import json

import pytest
import torch
from sdcup_testing import uer_reference_forward, uer_state_dict

from alicemind.core.checkpoint import CheckpointError
from alicemind.sdcup import SdcupEncoder, SdcupForNL2SQL, SdcupForPreTraining, UerLayerNorm

V, H, L, F, HEADS = 60, 32, 2, 64, 4


def _write(tmp_path, sd, name="sdcup_base_model.bin-50000", config=True):
    folder = tmp_path / "release"
    folder.mkdir(exist_ok=True)
    torch.save(sd, folder / name)
    if config:
        uer = {"emb_size": H, "feedforward_size": F, "hidden_size": H, "heads_num": HEADS, "layers_num": L,
               "dropout": 0.1}  # fmt: skip
        (folder / "bert_base_config.json").write_text(json.dumps(uer))
    return folder


def _inputs():
    ids = torch.tensor([[2, 7, 8, 9, 3, 10, 11, 3, 5, 3, 0, 0], [2, 12, 3, 13, 14, 3, 5, 3, 0, 0, 0, 0]])
    seg = torch.tensor([[1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0], [1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0, 0]])
    return ids, seg


def test_released_layout_loads_and_matches_uer_formulas_to_1e6(tmp_path):
    sd = uer_state_dict(V, H, L, F, dtype=torch.float64)
    model = SdcupEncoder.from_pretrained(_write(tmp_path, sd)).double().eval()
    assert model.source_format == "uer"
    assert model.config.num_attention_heads == HEADS and model.config.layer_norm_eps == 1e-6
    assert sum(isinstance(m, UerLayerNorm) for m in model.modules()) == 1 + 2 * L
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    ids, seg = _inputs()
    ours = model(ids, seg).last_hidden_state
    # The model holds fp32 parameters (cast on load, then .double()): the reference uses the same rounded weights.
    ref = uer_reference_forward({k: v.float().double() for k, v in sd.items()}, ids, seg, HEADS)
    real = seg > 0
    diff = (ours - ref)[real].abs().max().item()
    assert diff < 1e-6
    assert diff < 1e-12  # same arithmetic in float64: only summation order differs
    # The UER norm is not torch's: the same weights under nn.LayerNorm arithmetic differ measurably.
    x = torch.randn(4, H, dtype=torch.float64) * 0.01
    uer = UerLayerNorm(H).double()
    torch_ln = torch.nn.functional.layer_norm(x, (H,), eps=1e-6)
    assert (uer(x) - torch_ln).abs().max().item() > 1e-5


def test_float32_matches_reference(tmp_path):
    sd = uer_state_dict(V, H, L, F)
    model = SdcupEncoder.from_pretrained(_write(tmp_path, sd)).eval()
    ids, seg = _inputs()
    ref = uer_reference_forward({k: v.double() for k, v in sd.items()}, ids, seg, HEADS)
    assert (model(ids, seg).last_hidden_state.double() - ref)[seg > 0].abs().max().item() < 1e-4


def test_wrapper_prefix_and_mlm_target_are_read(tmp_path):
    sd = uer_state_dict(V, H, L, F, dtype=torch.float64)
    wrapped = {f"pre_encoder.{k}": v for k, v in sd.items()}
    wrapped["mlp_all.linear.weight"] = torch.zeros(400, 768)
    wrapped["enc_h.weight_ih_l0"] = torch.zeros(4, 768)
    model = SdcupForPreTraining.from_pretrained(_write(tmp_path, wrapped))
    assert model.source_format == "uer (pre_encoder wrapper)"
    torch.testing.assert_close(model.mlm.decoder.weight, sd["target.mlm_linear_2.weight"].float())
    torch.testing.assert_close(model.mlm.norm.weight, sd["target.layer_norm.gamma"].float())
    torch.testing.assert_close(model.sdcup.encoder.layers[1].self_attn.k_proj.weight,
                               sd["encoder.transformer.1.self_attn.linear_layers.1.weight"].float())  # fmt: skip
    # The NL2SQL model reads the encoder; its head is new (an optional key), the MLM target is a named unused key.
    nl2sql = SdcupForNL2SQL.from_pretrained(tmp_path / "release")
    torch.testing.assert_close(nl2sql.sdcup.embeddings.norm.bias, sd["embedding.layer_norm.beta"].float())


def test_the_config_matching_the_weights_is_chosen(tmp_path):
    folder = _write(tmp_path, uer_state_dict(V, H, L, F))
    large = {"emb_size": 64, "feedforward_size": 256, "hidden_size": 64, "heads_num": 16, "layers_num": 4}
    (folder / "bert_a_large_config.json").write_text(json.dumps(large))  # sorts first, does not fit
    assert SdcupEncoder.from_pretrained(folder / "sdcup_base_model.bin-50000").config.num_attention_heads == HEADS
    (folder / "bert_base_config.json").unlink()
    with pytest.raises(CheckpointError, match="no UER config beside the file has hidden_size=32, layers_num=2"):
        SdcupEncoder.from_pretrained(folder / "sdcup_base_model.bin-50000")


def test_shapes_without_config_file_and_unknown_key_is_an_error(tmp_path):
    sd = uer_state_dict(V, 128, 1, 256)
    model = SdcupEncoder.from_pretrained(_write(tmp_path, sd, config=False))
    assert (model.config.hidden_size, model.config.num_attention_heads, model.config.num_hidden_layers) == (128, 2, 1)
    sd["encoder.transformer.0.mystery.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="mystery"):
        SdcupEncoder.from_pretrained(_write(tmp_path, sd, config=False))


def test_hostile_pickle_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "sdcup_base_model.bin-1").write_bytes(pickle.dumps({"embedding.word_embedding.weight": Evil()}))
    with pytest.raises(CheckpointError):
        SdcupEncoder.from_pretrained(folder)


def test_save_pretrained_round_trip_and_hf_export(tmp_path):
    from transformers import BertModel

    from alicemind.sdcup.convert import export_huggingface_bert

    sd = uer_state_dict(V, H, L, F)
    model = SdcupEncoder.from_pretrained(_write(tmp_path, sd)).eval()
    model.save_pretrained(tmp_path / "ours")
    again = SdcupEncoder.from_pretrained(tmp_path / "ours").eval()
    assert again.source_format == "alicemind"
    ids, seg = _inputs()
    torch.testing.assert_close(again(ids, seg).last_hidden_state, model(ids, seg).last_hidden_state, rtol=0, atol=0)
    export_huggingface_bert(model, tmp_path / "hf")
    note = json.loads((tmp_path / "hf" / "config.json").read_text())["alicemind_note"]
    assert "std + eps" in note
    hf = BertModel.from_pretrained(tmp_path / "hf", add_pooling_layer=False).eval()
    with torch.no_grad():
        theirs = hf(input_ids=ids, token_type_ids=seg, attention_mask=(seg > 0).long()).last_hidden_state
    diff = (theirs - model(ids, seg).last_hidden_state)[seg > 0].abs().max().item()
    # Close, not equal: sqrt(var + eps^2) versus std + eps (the stated difference).
    assert 1e-7 < diff < 2e-3
