"""PLUG in transformers: AutoModelForSeq2SeqLM / AutoModelForSequenceClassification load a saved tiny model as
ours (exactly our outputs); ``generate`` is core.generation's."""

from __future__ import annotations

import pytest
import torch

import alicemind.plug as plug
from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.interop.checks import max_output_difference


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    # Per test, not at import: a module-level setting leaked into the download tests of the same session.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


IDS = torch.tensor([[101, 7, 8, 9, 102, 0], [101, 10, 11, 12, 13, 102]])
MASK = (IDS != 0).long()
CASES = [
    ("PlugForConditionalGeneration", "AutoModelForSeq2SeqLM", dict(decoder_input_ids=torch.tensor([[101, 5]] * 2))),
    ("PlugForSequenceClassification", "AutoModelForSequenceClassification", {}),
]


@pytest.mark.parametrize(("ours", "auto", "extra"), CASES, ids=[c[1] for c in CASES])
def test_auto_class_returns_our_model_with_our_outputs(tmp_path, ours, auto, extra):
    import transformers

    torch.manual_seed(0)
    model = getattr(plug, ours)(plug.PlugConfig.from_preset("plug.tiny")).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = getattr(transformers, auto).from_pretrained(tmp_path / "m")
    assert type(loaded).__name__ == ours
    inputs = dict(input_ids=IDS, attention_mask=MASK, **extra)
    assert max_output_difference(model, auto, tmp_path / "m", inputs) == 0.0
    if auto == "AutoModelForSeq2SeqLM":
        expected = generate(model, IDS, MASK, GenerationConfig(**model.generation_defaults(), max_new_tokens=4))
        assert torch.equal(loaded.generate(IDS, attention_mask=MASK, max_new_tokens=4), expected.sequences)


def test_text_classification_pipeline_runs_our_classifier(tmp_path):
    from transformers import pipeline

    from alicemind.plug import PlugTokenizer

    torch.manual_seed(0)
    labels = {"0": "neg", "1": "pos"}
    config = plug.PlugConfig.from_preset("plug.tiny")
    config.extra.update(num_labels=2, id2label=labels)  # PLUG keeps label settings among the extra keys
    model = plug.PlugForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "m")
    vocab = [f"[unused{i}]" for i in range(model.config.vocab_size)]
    vocab[1:5] = list("好不错坏")
    vocab[0], vocab[100:104] = "[PAD]", ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    PlugTokenizer.from_vocab({t: i for i, t in enumerate(vocab)}).save_pretrained(tmp_path / "m")
    classify = pipeline("text-classification", model=str(tmp_path / "m"), device="cpu")
    assert type(classify.model).__name__ == "PlugForSequenceClassification"
    ids = torch.tensor([[101, 1, 2, 3, 102]])
    with torch.no_grad():
        probs = model(ids, torch.ones_like(ids), torch.zeros_like(ids)).logits.softmax(-1)[0]
    got = classify("好不错")
    assert got[0]["label"] == labels[str(int(probs.argmax()))]
    assert got[0]["score"] == pytest.approx(probs.max().item(), abs=1e-6)
