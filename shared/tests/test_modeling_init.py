"""core.modeling.init_bert_weights: the one BERT initialisation every family uses."""

import torch
from torch import nn

from alicemind.core.modeling import init_bert_weights


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(50, 16, padding_idx=0)
        self.proj = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.extra = nn.ParameterList([nn.Parameter(torch.full((4,), 7.0))])


def test_bert_init_values_padding_rows_and_the_extra_hook():
    torch.manual_seed(0)
    net = _Net()
    nn.init.constant_(net.norm.weight, 3.0)
    seen = []
    init_bert_weights(net, 0.02, other=lambda m: seen.append(type(m).__name__))
    assert torch.equal(net.table.weight[0], torch.zeros(16)) and net.table.weight[1:].std() < 0.05
    assert torch.equal(net.proj.bias, torch.zeros(16)) and 0.005 < float(net.proj.weight.std()) < 0.05
    assert torch.equal(net.norm.weight, torch.ones(16)) and torch.equal(net.norm.bias, torch.zeros(16))
    assert seen == ["_Net", "ParameterList"]  # every other module, in module order
    init_bert_weights(net, 0.02, zero_padding_rows=False)
    assert bool(net.table.weight[0].abs().sum() > 0)
