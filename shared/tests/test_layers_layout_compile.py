"""LayoutEmbeddings: eager calls refuse out-of-range boxes; traced calls skip that host-side check, so the layer is
one graph under torch.compile(fullgraph=True) and gives the eager values."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.layers import LayoutEmbeddings
from alicemind.core.ops.compiling import trace_calls


@pytest.mark.parametrize("separate_tables", [True, False])
def test_layout_embeddings_trace_whole_and_still_refuse_bad_boxes_eagerly(separate_tables):
    torch.manual_seed(0)
    layer = LayoutEmbeddings(8, max_coordinate=20, separate_tables=separate_tables)
    boxes = [torch.randint(0, 21, (2, 5, 4)) for _ in range(3)]
    trace = trace_calls(layer, [(b,) for b in boxes])
    assert trace.graphs == 1
    for got, b in zip(trace.outputs, boxes, strict=True):
        torch.testing.assert_close(got, layer(b), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"must lie in \[0, 20\]"):
        layer(torch.full((1, 2, 4), 21))
