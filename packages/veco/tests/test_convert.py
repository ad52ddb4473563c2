"""Every VECO release layout loads (and says which it was); bad inputs give one clear error."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import veco_releases as rel
from veco_testing import random_batch, tiny_config

from alicemind.core.checkpoint import CheckpointError, UnsafeCheckpointError
from alicemind.veco import (
    VecoForConditionalGeneration,
    VecoForPreTraining,
    VecoForSequenceClassification,
    VecoModel,
)
from alicemind.veco.convert import to_hf_keys

DICT_ROWS = 4 + len(rel.dictionary_lines())


def _write_release_nlu(folder, model, *, model_type="xlm-roberta"):
    """The xtreme-released-veco/ layout: XLM-R config.json + pytorch_model.bin with roberta.* keys."""
    folder.mkdir(parents=True)
    keys = to_hf_keys(model.state_dict(), "roberta.")
    state = {("roberta." + k if not k.startswith(("roberta.", "classifier.")) else k): v for k, v in keys.items()}
    state["roberta.embeddings.position_ids"] = torch.arange(model.config.max_position_embeddings)[None]
    torch.save(state, folder / "pytorch_model.bin")
    cfg = {k: v for k, v in model.config.to_dict().items() if k not in ("padding_free", "is_encoder_decoder",
           "decoder_layers", "scale_embedding", "activation_dropout", "decoder_start_token_id", "task_specs")}  # fmt: skip
    cfg.update(model_type=model_type, architectures=["XLMRobertaForMaskedLM"], output_past=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize(("model_type", "fmt"), [("xlm-roberta", "xtreme-released-veco"), ("veco", "sofa")])
def test_released_and_sofa_nlu_folders(tmp_path, model_type, fmt):
    torch.manual_seed(0)
    source = VecoModel(tiny_config()).eval()
    folder = _write_release_nlu(tmp_path / "xtreme-released-veco", source, model_type=model_type)
    model = VecoModel.from_pretrained(folder).eval()
    assert model.source_format == fmt
    ids, mask = random_batch(source.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(model(ids, mask).last_hidden_state, source(ids, mask).last_hidden_state)
    head = VecoForSequenceClassification.from_pretrained(folder, num_labels=3)
    assert torch.equal(head.roberta.embeddings.word_embeddings.weight, source.embeddings.word_embeddings.weight)
    assert head.classifier.out_proj.weight.shape == (3, 32)


def test_pretraining_folder_unplugs_cross_attention_for_nlu(tmp_path):
    torch.manual_seed(0)
    pre = VecoForPreTraining(tiny_config()).eval()
    pre.save_pretrained(tmp_path / "pt")
    keys = set(json.loads((tmp_path / "pt" / "config.json").read_text()))
    assert "vocab_size" in keys
    again = VecoForPreTraining.from_pretrained(tmp_path / "pt")
    for (name, a), b in zip(pre.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    nlu = VecoModel.from_pretrained(tmp_path / "pt").eval()
    assert not any("cross_attn" in k for k in nlu.state_dict())
    ids, mask = random_batch(pre.config.vocab_size)
    with torch.no_grad():
        expected = pre.roberta(ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(nlu(ids, mask).last_hidden_state, expected, atol=1e-6)


def test_keep_decoder_layers_and_the_file_args(tmp_path):
    state = rel.fairseq_state_dict(DICT_ROWS + 1)
    folder = rel.write_fairseq_folder(tmp_path / "a", state=state)
    model = VecoForConditionalGeneration.from_pretrained(folder, keep_decoder_layers=[3, 7])
    assert model.config.decoder_layers == 2
    assert torch.equal(
        model.decoder.layers[1].self_attn.k_proj.weight, state["decoder.layers.7.self_attn.k_proj.weight"]
    )
    # A checkpoint whose args carry --keep-decoder-layers (as the fine-tune scripts write) keeps those.
    folder = rel.write_fairseq_folder(tmp_path / "b", state=state, args=rel.veco_args(keep_decoder_layers="0,1,2"))
    model = VecoForConditionalGeneration.from_pretrained(folder)
    assert model.config.decoder_layers == 3
    assert torch.equal(model.decoder.layers[2].ffn.fc_out.weight,
                       state["decoder.layers.2.fc2.weight"])  # fmt: skip


def test_keep_decoder_layers_past_the_file_is_one_clear_error(tmp_path):
    folder = rel.write_fairseq_folder(tmp_path / "m")
    with pytest.raises(
        CheckpointError, match=r"keep_decoder_layers index 24 is past the file's 24 decoder layers \(0..23\)"
    ):
        VecoForConditionalGeneration.from_pretrained(folder, keep_decoder_layers="18,19,24")


def test_dictionary_not_matching_the_embedding_is_one_clear_error(tmp_path):
    folder = rel.write_fairseq_folder(tmp_path / "m")
    (folder / "dict.txt").write_text("\n".join(rel.dictionary_lines()[:-5]) + "\n")
    with pytest.raises(CheckpointError, match=r"the dictionary has \d+ symbols but the embedding of .* has \d+ rows"):
        VecoForConditionalGeneration.from_pretrained(folder)


def test_resized_dictionary_map_selects_rows(tmp_path):
    lines = rel.dictionary_lines()
    state = rel.fairseq_state_dict(4 + len(lines) + 1)
    folder = rel.write_fairseq_folder(tmp_path / "pre", state=state, lines=lines)
    flags = [i % 3 != 1 for i in range(len(lines))]
    (tmp_path / "map.txt").write_text("".join(f"{int(f)}\n" for f in flags))
    small = [line for line, f in zip(lines, flags) if f]
    (tmp_path / "dict.small.txt").write_text("\n".join(small) + "\n")
    model = VecoForConditionalGeneration.from_pretrained(
        folder, resized_dict_map=tmp_path / "map.txt", dictionary=tmp_path / "dict.small.txt"
    )
    rows = [0, 1, 2, 3] + [4 + i for i, f in enumerate(flags) if f]
    assert model.config.vocab_size == len(rows) == 4 + len(small)
    assert torch.equal(model.word_embeddings.weight, state["encoder.embed_tokens.weight"][rows])
    (tmp_path / "map.txt").write_text("1\n0\n")
    with pytest.raises(CheckpointError, match="resized_dict_map .* has 2 lines"):
        VecoForConditionalGeneration.from_pretrained(
            folder, resized_dict_map=tmp_path / "map.txt", dictionary=tmp_path / "dict.small.txt"
        )


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if unpickled with pickle.load


def test_hostile_pickle_in_model_pt_is_refused_and_runs_nothing(tmp_path):
    folder = rel.write_fairseq_folder(tmp_path / "m")
    marker = tmp_path / "pwned"
    ckpt = torch.load(folder / "model.pt", weights_only=False)  # written by this test itself
    ckpt["extra_state"] = _Hostile(marker)
    torch.save(ckpt, folder / "model.pt", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(UnsafeCheckpointError):
        VecoForConditionalGeneration.from_pretrained(folder)
    assert not marker.exists()


def test_nlu_and_nlg_folders_are_not_confused(tmp_path):
    folder = rel.write_fairseq_folder(tmp_path / "nlg")
    with pytest.raises(CheckpointError, match="VecoForConditionalGeneration"):
        VecoModel.from_pretrained(folder)
    VecoModel(tiny_config()).save_pretrained(tmp_path / "nlu")
    with pytest.raises(CheckpointError, match="NLU encoder"):
        VecoForConditionalGeneration.from_pretrained(tmp_path / "nlu")
