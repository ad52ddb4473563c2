"""StructBERT folders in transformers: the architecture is BERT's, so the Auto classes load our folders as the
BERT peer (config.json says "bert"), with our outputs; pipelines run on them end to end."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.interop.checks import max_output_difference
from alicemind.structbert import (
    StructBertConfig,
    StructBertForMaskedLM,
    StructBertForQuestionAnswering,
    StructBertForSequenceClassification,
    StructBertForTokenClassification,
    StructBertModel,
    StructBertTokenizer,
)


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    # Per test, not at import: a module-level setting leaked into the download tests of the same session.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


WORDS = "the cat sat on a mat dog ran far good bad film was very".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
LABELS = {"0": "negative", "1": "positive"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(cls, **fields):
    torch.manual_seed(0)
    config = StructBertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        **fields,
    )
    return cls(config).eval()


def save(model, folder):
    model.save_pretrained(folder)
    StructBertTokenizer.from_vocab({t: i for i, t in enumerate(VOCAB)}).save_pretrained(folder)
    return folder


INPUTS = dict(
    input_ids=torch.tensor([[2, 5, 6, 7, 3, 0], [2, 8, 9, 10, 11, 3]]),
    attention_mask=torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]),
    token_type_ids=torch.zeros(2, 6, dtype=torch.long),
)
CASES = [
    (StructBertModel, "AutoModel", "BertModel", {}),
    (StructBertForSequenceClassification, "AutoModelForSequenceClassification", "BertForSequenceClassification", {}),
    (StructBertForTokenClassification, "AutoModelForTokenClassification", "BertForTokenClassification", {}),
    (StructBertForQuestionAnswering, "AutoModelForQuestionAnswering", "BertForQuestionAnswering", {}),
    (StructBertForMaskedLM, "AutoModelForMaskedLM", "BertForMaskedLM", {}),
]


@pytest.mark.parametrize(("ours", "auto", "peer", "fields"), CASES, ids=[c[1] for c in CASES])
def test_auto_class_loads_the_bert_peer_with_our_outputs(tmp_path, ours, auto, peer, fields):
    import transformers

    model = tiny(ours, **fields)
    folder = save(model, tmp_path / "m")
    assert type(getattr(transformers, auto).from_pretrained(folder)).__name__ == peer
    assert max_output_difference(model, auto, folder, INPUTS) < 1e-5


def test_text_classification_pipeline(tmp_path):
    from transformers import pipeline

    model = tiny(StructBertForSequenceClassification, id2label=LABELS, label2id={v: int(k) for k, v in LABELS.items()})
    classify = pipeline("text-classification", model=str(save(model, tmp_path / "m")), device="cpu")
    got = classify("the cat sat on a mat")
    ids = torch.tensor([[2, 5, 6, 7, 8, 9, 10, 3]])
    with torch.no_grad():
        probs = model(ids, torch.ones_like(ids), torch.zeros_like(ids)).logits.softmax(-1)[0]
    assert got[0]["label"] == LABELS[str(int(probs.argmax()))]
    assert got[0]["score"] == pytest.approx(probs.max().item(), abs=1e-5)


def test_token_classification_pipeline(tmp_path):
    from transformers import pipeline

    labels = {"0": "O", "1": "B-ANIMAL", "2": "I-ANIMAL"}
    model = tiny(StructBertForTokenClassification, num_labels=3, id2label=labels)
    tag = pipeline("token-classification", model=str(save(model, tmp_path / "m")), device="cpu")
    got = tag("the cat ran")
    ids = torch.tensor([[2, 5, 6, 12, 3]])
    with torch.no_grad():
        best = model(ids, torch.ones_like(ids), torch.zeros_like(ids)).logits[0, 1:-1].argmax(-1)
    expected = [
        (word, labels[str(int(i))]) for word, i in zip(["the", "cat", "ran"], best) if labels[str(int(i))] != "O"
    ]
    assert [(e["word"], e["entity"]) for e in got] == expected


def test_fill_mask_pipeline(tmp_path):
    from transformers import AutoTokenizer, pipeline

    model = tiny(StructBertForMaskedLM)
    folder = str(save(model, tmp_path / "m"))
    # StructBERT reads "[MASK]" in text as plain text (as the original does); a fill-mask user asks otherwise.
    tokenizer = AutoTokenizer.from_pretrained(folder, split_special_tokens=False)
    fill = pipeline("fill-mask", model=folder, tokenizer=tokenizer, device="cpu", top_k=3)
    got = fill("the cat [MASK] on a mat")
    ids = torch.tensor([[2, 5, 6, 4, 8, 9, 10, 3]])
    with torch.no_grad():
        top = model(ids, torch.ones_like(ids), torch.zeros_like(ids)).logits[0][0, 3].softmax(-1).topk(3)
    assert [g["token"] for g in got] == top.indices.tolist()
    assert [g["score"] for g in got] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_question_answering_pipeline_gives_our_predicted_span(tmp_path):
    from transformers import pipeline

    from alicemind.core.data import QAExample
    from alicemind.structbert.finetuning_spans import predict_answers

    model = tiny(StructBertForQuestionAnswering)
    folder = str(save(model, tmp_path / "m"))
    qa = pipeline("alicemind-question-answering", model=folder, device="cpu")
    question, context = "who sat on the mat", "the cat sat on a mat the dog ran far"
    got = qa(question=question, context=context)
    ours = predict_answers(
        model, StructBertTokenizer.from_pretrained(folder), [QAExample("q", question, context)], 64, 1
    )
    assert set(got) == {"answer", "score", "start", "end"}
    assert got["answer"] == ours[0] != ""
    assert context[got["start"] : got["end"]] == got["answer"]
    assert 0 < got["score"] <= 1
    assert qa({"question": question, "context": context}) == got


def test_question_answering_pipeline_refuses_a_folder_without_a_qa_head(tmp_path):
    from transformers import pipeline

    from alicemind.core.interop import NoHeadError

    folder = str(save(tiny(StructBertForSequenceClassification), tmp_path / "m"))
    with pytest.raises(NoHeadError, match="no question-answering head"):
        pipeline("alicemind-question-answering", model=folder, device="cpu")
