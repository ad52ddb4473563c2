"""PALM in transformers: AutoConfig / AutoModel / AutoModelForSeq2SeqLM load a saved tiny model as ours (same
outputs bit for bit), and ``generate`` is core.generation's."""

from __future__ import annotations

import pytest
import torch

import alicemind.palm  # noqa: F401  (registers "palm" with transformers)
from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.interop.checks import max_output_difference
from alicemind.palm import PalmConfig, PalmForConditionalGeneration


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    # Per test, not at import: a module-level setting leaked into the download tests of the same session.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(params=["palm.ch.tiny", "palm.en.tiny"])
def saved(request, tmp_path):
    torch.manual_seed(0)
    model = PalmForConditionalGeneration(PalmConfig.from_preset(request.param)).eval()
    with torch.no_grad():  # widen the tiny init so greedy tokens are decisive
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    model.save_pretrained(tmp_path / "palm")
    return model, tmp_path / "palm"


def batch():
    ids = torch.tensor([[7, 9, 11, 13, 15, 17], [20, 22, 24, 0, 0, 0]])
    return ids, (ids != 0).long()


def test_auto_classes_load_our_model_with_our_outputs(saved):
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

    model, folder = saved
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "palm" and config.is_encoder_decoder
    assert config.to_alicemind() == model.config
    loaded = AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert type(loaded).__name__ == "PalmForConditionalGeneration"
    assert isinstance(loaded.alicemind, PalmForConditionalGeneration)
    ids, mask = batch()
    inputs = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.tensor([[101, 30, 31], [101, 40, 41]]))
    assert max_output_difference(model, "AutoModelForSeq2SeqLM", folder, inputs) == 0.0
    out = loaded(**inputs)
    assert set(out.keys()) == {"logits", "encoder_last_hidden_state"}
    assert type(AutoModel.from_pretrained(folder)).__name__ == "PalmModel"


def test_generate_is_core_generation(saved):
    from transformers import AutoModelForSeq2SeqLM

    model, folder = saved
    loaded = AutoModelForSeq2SeqLM.from_pretrained(folder)
    ids, mask = batch()
    for settings in (dict(max_new_tokens=6), dict(max_new_tokens=5, num_beams=3)):
        expected = generate(model, ids, mask, GenerationConfig(**model.generation_defaults(), **settings)).sequences
        got = loaded.generate(ids, attention_mask=mask, **settings)
        assert torch.equal(got, expected)
        assert got.shape[1] > 1


def test_save_pretrained_round_trips_our_folder(saved, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    model, folder = saved
    AutoModelForSeq2SeqLM.from_pretrained(folder).save_pretrained(tmp_path / "again")
    again = PalmForConditionalGeneration.from_pretrained(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_unsupported_arguments_are_refused(saved):
    from transformers import AutoModelForSeq2SeqLM

    _, folder = saved
    with pytest.raises(TypeError, match="does not support"):
        AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation="eager", quantization_config={})
    loaded = AutoModelForSeq2SeqLM.from_pretrained(folder)
    with pytest.raises(TypeError, match="core.generation does not have"):
        loaded.generate(*batch(), max_new_tokens=2, output_logits=True)


def test_summarization_pipeline_runs_our_generate(saved):
    from transformers import AutoTokenizer, pipeline

    from alicemind.palm import PalmChineseTokenizer

    model, folder = saved
    chars = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你")
    vocab = [f"[unused{i}]" for i in range(model.config.vocab_size)]
    vocab[1 : 1 + len(chars)] = chars
    vocab[0], vocab[100:104] = "[PAD]", ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # bos 101 / eos 102, as PALM's
    PalmChineseTokenizer.from_vocab({t: i for i, t in enumerate(vocab)}).save_pretrained(folder)
    summarize = pipeline("alicemind-summarization", model=str(folder), device="cpu")
    text = "我们在中国生成一个大的分会"
    got = summarize(text, max_new_tokens=6)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(text, return_tensors="pt")
    expected = generate(
        model,
        ids["input_ids"],
        ids["attention_mask"],
        GenerationConfig(**model.generation_defaults(), max_new_tokens=6),
    ).sequences[0]
    assert got == [{"summary_text": tokenizer.decode(expected, skip_special_tokens=True)}]
    assert got[0]["summary_text"].strip()
