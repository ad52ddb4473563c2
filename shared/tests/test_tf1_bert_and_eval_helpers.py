"""core.checkpoint.tf1_bert's BERT TF1 name table and core.training.evaluation.mean_output_metrics."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from alicemind.core.checkpoint.tf1_bert import bert_layer_variables, tf_dense, tf_norm
from alicemind.core.layers import BlockSpec, TransformerStack
from alicemind.core.training.evaluation import mean_output_metrics


def test_bert_layer_names_cover_every_core_stack_weight():
    names = bert_layer_variables(2)
    assert len(names) == 2 * 16
    assert names["bert/encoder/layer_1/attention/self/query/kernel"] == (
        "encoder.layers.1.self_attn.q_proj.weight",
        True,
    )
    assert names["bert/encoder/layer_0/output/LayerNorm/gamma"] == ("encoder.layers.0.ffn_norm.weight", False)
    stack = TransformerStack(BlockSpec(8, 2, 16), 2)
    ours = {f"encoder.{k}" for k in stack.state_dict()}
    assert {key for key, _ in names.values()} == ours
    assert tf_dense("a", "b") == {"a/kernel": ("b.weight", True), "a/bias": ("b.bias", False)}
    assert tf_norm("a", "b") == {"a/gamma": ("b.weight", False), "a/beta": ("b.bias", False)}


class _Scorer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        assert not torch.is_grad_enabled() and not self.training
        return SimpleNamespace(metrics={"loss": (x * self.w).mean(), "acc": torch.tensor(1.0)})


def test_mean_output_metrics_averages_over_batches():
    model = _Scorer().train()
    batches = [{"x": torch.tensor([1.0, 3.0])}, {"x": torch.tensor([6.0])}]
    assert mean_output_metrics(model, batches) == {"loss": (2.0 + 6.0) / 2, "acc": 1.0}
    assert mean_output_metrics(model, []) == {}
