"""Adapters: RoBERTa (no pooler; its head's dense input is dropout(h_CLS)), representation capture, idx removal."""

from __future__ import annotations

import torch

from alicemind.cap import HFBertAdapter, RepresentationCapture, StructuredPruner, find_adapter
from alicemind.cap.export import pruned_copy


def _tiny_roberta():
    import transformers

    torch.manual_seed(0)
    cfg = transformers.RobertaConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=3)  # fmt: skip
    return transformers.RobertaForSequenceClassification(cfg).eval()


def test_roberta_is_adapted_and_exports_equal_outputs():
    model = _tiny_roberta()
    assert isinstance(find_adapter(model), HFBertAdapter)
    ids = torch.randint(3, 40, (2, 6))
    capture = RepresentationCapture(model, find_adapter(model))
    with torch.no_grad():
        out = model(input_ids=ids, idx=torch.tensor([4, 5])).logits  # idx is taken out of the call
        h_cls = model.roberta(input_ids=ids).last_hidden_state[:, 0]
    torch.testing.assert_close(capture.take(), h_cls)  # eval: dropout is the identity
    assert capture.last_idx.tolist() == [4, 5]
    pruner = StructuredPruner(model)
    pruner.prune_to(0.5, torch.rand(2, 4), torch.rand(2, 64))
    with torch.no_grad():
        masked = model(input_ids=ids).logits
        small = pruned_copy(model, pruner)(input_ids=ids).logits
    torch.testing.assert_close(small, masked, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(masked, out)  # the masks changed the model


def test_core_classifier_representation_is_dropout_of_pooled(tiny):
    model = tiny.core().train()
    capture = RepresentationCapture(model, find_adapter(model))
    torch.manual_seed(3)
    model(input_ids=torch.randint(1, 40, (3, 5)))
    rep = capture.take()
    assert rep.shape == (3, 32) and rep.requires_grad  # gradients flow through the query
    assert bool((rep == 0).any())  # train-mode classifier dropout was applied before the query
