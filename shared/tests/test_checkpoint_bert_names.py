"""The shared BERT layer rename rules map onto a core TransformerStack's keys and back."""

from __future__ import annotations

import torch

from alicemind.core.checkpoint import rename_keys
from alicemind.core.checkpoint.bert_names import BERT_LAYER_TO_CORE, CORE_TO_BERT_LAYER
from alicemind.core.layers import BlockSpec, TransformerStack


def test_bert_layer_names_cover_a_core_stack_both_ways():
    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = TransformerStack(BlockSpec(8, 2, 16), 2)

    ours = Holder().state_dict()
    bert = rename_keys(ours, CORE_TO_BERT_LAYER)
    assert "encoder.layer.1.attention.self.query.weight" in bert
    assert "encoder.layer.0.output.LayerNorm.bias" in bert
    assert all(k.startswith("encoder.layer.") for k in bert)
    back = rename_keys(bert, BERT_LAYER_TO_CORE)
    assert back.keys() == ours.keys() and all(back[k] is ours[k] for k in ours)
