"""Released TF1 folders, written in the test with the released variable names at tiny scale of all three sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from labert_testing import tiny_config
from labert_tf1 import released_tensors, write_release_folder

from alicemind.core.checkpoint import CheckpointError, list_tf_checkpoint
from alicemind.latticebert import LatticeBertForPreTraining, LatticeBertForSequenceClassification, LatticeBertModel

# Each release's (E, H, L, A, FFN) with E and H divided by 16 and FFN kept at 4H (layers and heads as released).
SIZES = {
    "tiny": dict(embedding_size=8, hidden_size=16, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64),
    "lite": dict(embedding_size=8, hidden_size=32, num_hidden_layers=6, num_attention_heads=8, intermediate_size=128),
    "base": dict(embedding_size=8, hidden_size=48, num_hidden_layers=12, num_attention_heads=12, intermediate_size=192),
}


def released_config(size: str) -> dict:
    # As labert_config.json spells it: BERT field names, "gelu" meaning the tanh form.
    return dict(vocab_size=60, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                max_position_embeddings=32, type_vocab_size=16, initializer_range=0.02, **SIZES[size])  # fmt: skip


def release(tmp_path, size: str, *, extra=None, drop=None, reshape=None):
    torch.manual_seed(0)
    source = LatticeBertForPreTraining(tiny_config(60, **SIZES[size], max_position_embeddings=32)).eval()
    tensors = released_tensors(source, "pretraining")
    rng = np.random.default_rng(0)
    # What real checkpoints also hold: optimizer slots, the step counter, the port script's junk copies.
    for name in list(tensors)[:3]:
        tensors[f"{name}/adam_m"] = rng.standard_normal(tensors[name].shape).astype(np.float32)
        tensors[f"{name}/adam_v"] = rng.standard_normal(tensors[name].shape).astype(np.float32)
    tensors["global_step"] = np.array(100000, dtype=np.int64)
    tensors["bert-1/embeddings/word_embeddings"] = rng.standard_normal((40, 8)).astype(np.float32)
    tensors["cls-1/predictions/output_bias"] = rng.standard_normal(40).astype(np.float32)
    tensors.update(extra or {})
    for name in drop or ():
        del tensors[name]
    for name, shape in (reshape or {}).items():
        tensors[name] = np.zeros(shape, dtype=np.float32)
    return source, write_release_folder(tmp_path / size, tensors, released_config(size))


@pytest.mark.parametrize("size", sorted(SIZES))
def test_every_variable_accounted_for_and_outputs_equal(tmp_path, size):
    source, folder = release(tmp_path, size)
    assert len(list_tf_checkpoint(folder / "model.ckpt")) > 16 * SIZES[size]["num_hidden_layers"]
    model = LatticeBertForPreTraining.from_pretrained(folder).eval()
    assert model.source_format == "latticebert-tf1"
    assert model.config.hidden_act == "gelu_tanh"
    want, got = source.state_dict(), model.state_dict()
    assert set(want) == set(got)
    for key in want:
        assert torch.equal(want[key], got[key]), key
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    inputs = dict(lattice_starts=torch.tensor([[0, 1, 2, 1, 3]]), lattice_ends=torch.tensor([[0, 1, 2, 2, 3]]))
    with torch.no_grad():
        assert torch.equal(model(ids, **inputs).logits[1], source(ids, **inputs).logits[1])
    # The encoder alone (pre-training heads reported as unused), then ours round-trips through safetensors.
    encoder = LatticeBertModel.from_pretrained(folder)
    encoder.save_pretrained(tmp_path / "ours")
    again = LatticeBertModel.from_pretrained(tmp_path / "ours")
    assert again.source_format == "alicemind"
    assert torch.equal(again.embeddings.word_embeddings.weight, source.bert.embeddings.word_embeddings.weight)


def test_classifier_starts_fresh_from_a_pretraining_release(tmp_path):
    _, folder = release(tmp_path, "tiny")
    model = LatticeBertForSequenceClassification.from_pretrained(folder, num_labels=3)
    assert model.classifier.weight.shape == (3, 16)


def test_missing_variable_is_named(tmp_path):
    _, folder = release(tmp_path, "tiny", drop=["bert/encoder/layer_2/attention/self/key/kernel"])
    with pytest.raises(CheckpointError, match=r"missing variable 'bert/encoder/layer_2/attention/self/key/kernel'"):
        LatticeBertModel.from_pretrained(folder)


def test_misshaped_variable_is_named(tmp_path):
    _, folder = release(tmp_path, "lite", reshape={"bert/encoder/relative_position_scores_2": (257, 4)})
    with pytest.raises(CheckpointError, match=r"'bert/encoder/relative_position_scores_2' has shape \(257, 4\)"):
        LatticeBertModel.from_pretrained(folder)


def test_unknown_variable_is_named(tmp_path):
    _, folder = release(tmp_path, "tiny", extra={"bert/encoder/mystery": np.zeros(3, dtype=np.float32)})
    with pytest.raises(CheckpointError, match="'bert/encoder/mystery'"):
        LatticeBertModel.from_pretrained(folder)
