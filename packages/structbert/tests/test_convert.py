"""Released StructBERT layouts: tiny files written here in each release's exact key names and containers."""

import os
import pickle

import pytest
import torch
from structbert_releases import TINY, hf_names, release_state_dict, write_config

from alicemind.core.checkpoint import CheckpointMismatchError, CorruptCheckpointError, UnsafeCheckpointError
from alicemind.structbert import (
    StructBertConfig,
    StructBertForPreTraining,
    StructBertForSequenceClassification,
    StructBertModel,
)

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("prefix", ["", "bert.", "module.bert."])
def test_release_file_loads_with_every_prefix(tmp_path, prefix):
    sd = release_state_dict()
    write_config(tmp_path)
    torch.save({prefix + k: v for k, v in sd.items()}, tmp_path / "en_model")
    model = StructBertModel.from_pretrained(tmp_path / "en_model")
    assert model.source_format == "structbert-release"
    assert model.config.extra == {"attention_type": "self"}
    ours = model.export_state_dict()
    assert set(ours) == set(hf_names(sd))  # every key accounted for, nothing invented
    for key, value in hf_names(sd).items():
        assert torch.equal(ours[key], value), key


def test_release_round_trip_through_hugging_face_is_identical(tmp_path):
    """en_model layout -> ours -> Hugging Face -> ours: identical tensors."""
    sd = release_state_dict(seed=1)
    torch.save(sd, tmp_path / "en_model")
    model = StructBertModel.from_pretrained(tmp_path / "en_model", config=_tiny_config())
    model.save_pretrained(tmp_path / "ours")
    hf = transformers.BertModel.from_pretrained(str(tmp_path / "ours"))
    hf.save_pretrained(tmp_path / "hf")
    back = StructBertModel.from_pretrained(tmp_path / "hf")
    assert back.source_format == "huggingface-bert"
    final = back.export_state_dict()
    for key, value in hf_names(sd).items():
        assert torch.equal(final[key], value), key


def _tiny_config():
    return StructBertConfig(**TINY)


def test_config_inferred_from_shapes_when_no_config_file(tmp_path, caplog):
    torch.save(release_state_dict(hidden=128, ffn=256), tmp_path / "ch_model")
    model = StructBertModel.from_pretrained(tmp_path / "ch_model")
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.num_attention_heads) == (128, 2, 256, 2)
    assert "inferred from tensor shapes" in caplog.text


def test_fine_tuned_multi_task_release_file(tmp_path):
    sd = {"bert." + k: v for k, v in release_state_dict().items()}
    sd.update(
        {
            "classifier.0.weight": torch.randn(3, 32),
            "classifier.0.bias": torch.randn(3),
            "classifier.1.weight": torch.randn(1, 32),
            "classifier.1.bias": torch.randn(1),
        }
    )
    write_config(tmp_path)
    torch.save(sd, tmp_path / "en_model")
    model = StructBertForSequenceClassification.from_pretrained(tmp_path / "en_model")
    assert model.config.task_num_labels == [3, 1]
    assert torch.equal(model.classifier.classifiers[1].weight, sd["classifier.1.weight"])
    exported = model.export_state_dict()
    assert set(exported) == set(hf_names(sd))
    # The encoder alone loads from the same file; the classifier heads are reported and dropped.
    enc = StructBertModel.from_pretrained(tmp_path / "en_model")
    assert torch.equal(enc.embeddings.word_embeddings.weight, sd["bert.embeddings.word_embeddings.weight"])


def test_sofa_folder_with_pretraining_heads(tmp_path):
    sd = {"bert." + k: v for k, v in hf_names(release_state_dict()).items()}
    sd["bert.embeddings.position_ids"] = torch.arange(40)[None]
    sd.update(
        {
            "cls.predictions.transform.dense.weight": torch.randn(32, 32),
            "cls.predictions.transform.dense.bias": torch.randn(32),
            "cls.predictions.transform.LayerNorm.weight": torch.randn(32),
            "cls.predictions.transform.LayerNorm.bias": torch.randn(32),
            "cls.predictions.bias": torch.randn(120),
            "cls.predictions.decoder.weight": sd["bert.embeddings.word_embeddings.weight"],
            "cls.seq_relationship.weight": torch.randn(3, 32),
            "cls.seq_relationship.bias": torch.randn(3),
        }
    )
    folder = tmp_path / "english_sbert-large-std-512"
    write_config(folder, model_type="sbert", adv_grad_factor=5e-5, sigma=5e-6, adv_bound=1e-5, layer_norm_eps=1e-12)
    torch.save(sd, folder / "pytorch_model.bin")
    model = StructBertForPreTraining.from_pretrained(folder)
    assert model.source_format == "sofa"
    assert torch.equal(model.cls_seq_relationship.weight, sd["cls.seq_relationship.weight"])
    assert torch.equal(model.cls_predictions.bias, sd["cls.predictions.bias"])
    assert model.cls_predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert StructBertModel.from_pretrained(folder).source_format == "sofa"


def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "en_model", "wb") as f:
        pickle.dump({"embeddings.word_embeddings.weight": Exploit()}, f)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        StructBertModel.from_pretrained(tmp_path / "en_model", config=_tiny_config())
    assert not marker.exists()


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    StructBertModel(_tiny_config()).save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        StructBertModel.from_pretrained(tmp_path)


def test_shape_missing_and_unexpected_keys_are_named(tmp_path):
    sd = release_state_dict()
    torch.save(sd, tmp_path / "en_model")
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch.*word_embeddings"):
        StructBertModel.from_pretrained(tmp_path / "en_model", config=_tiny_config(), vocab_size=99)
    missing = dict(sd)
    del missing["encoder.layer.1.output.dense.bias"]
    torch.save(missing, tmp_path / "en_model")
    with pytest.raises(CheckpointMismatchError, match=r"missing.*encoder\.layers\.1\.ffn\.fc_out\.bias"):
        StructBertModel.from_pretrained(tmp_path / "en_model", config=_tiny_config())
    extra = dict(sd)
    extra["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(2)
    torch.save(extra, tmp_path / "en_model")
    with pytest.raises(CheckpointMismatchError, match=r"unexpected.*rotary"):
        StructBertModel.from_pretrained(tmp_path / "en_model", config=_tiny_config())
    with pytest.raises(FileNotFoundError):
        StructBertModel.from_pretrained(tmp_path / "does-not-exist")
