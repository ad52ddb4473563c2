"""optimize_for_inference: inductor with weight freezing on CPU gives eager's outputs, compiles once per bucket,
reports its start-up cost, and leaves the model's other attributes reachable."""

from __future__ import annotations

import torch
from torch import nn

from alicemind.core.layers import BlockSpec, TextEmbeddings, TransformerStack
from alicemind.core.ops import optimize_for_inference
from alicemind.core.ops.compiling import pad_to_bucket


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = TextEmbeddings(30, 32, max_positions=32, dropout=0.0)
        self.encoder = TransformerStack(BlockSpec(32, 2, 64, dropout=0.0, attention_dropout=0.0), 2)
        self.marker = "tiny"

    def forward(self, input_ids, attention_mask):
        return self.encoder(self.embeddings(input_ids), padding_mask=attention_mask).last_hidden_state


def test_frozen_inductor_matches_eager_and_compiles_once_per_bucket(tmp_path):
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    messages = []
    fast = optimize_for_inference(model, cache_dir=tmp_path / "cache", report=messages.append)
    assert fast.marker == "tiny" and fast.model is model
    requests = []
    for length in (5, 7):  # two ragged requests that share the 16-position bucket
        ids = torch.randint(1, 30, (2, length))
        mask = torch.ones(2, length, dtype=torch.long)
        mask[1, length - 2 :] = 0
        requests.append({"input_ids": ids, "attention_mask": mask})
    for request in requests:
        padded, length = pad_to_bucket(request, (16,))
        got = fast(**padded)[:, :length]
        with torch.no_grad():
            want = model(**request)
        real = request["attention_mask"].bool()
        torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
    assert len(fast.compile_seconds) == 1  # one bucket, one graph
    # Frozen weights: the linear layers run oneDNN/MKL prepacked kernels, not aten::addmm on the fp32 weights.
    with torch.profiler.profile() as profile:
        fast(**pad_to_bucket(requests[0], (16,))[0])
    ops = {event.key for event in profile.key_averages()}
    assert not {"aten::addmm", "aten::mm"} & ops, sorted(ops)
    assert any(op.startswith(("mkl::", "mkldnn::")) for op in ops), sorted(ops)
    assert len(messages) == 1 and messages[0].startswith("compiled forward for a new input shape in ")
    assert any((tmp_path / "cache").iterdir())  # the on-disk cache a later process reuses


def test_a_padding_free_encoder_compiles_one_graph_for_ragged_batches_of_a_bucket():
    # Packing the real tokens uses nonzero (a data-dependent size): it must stay inside the one graph, not split it
    # and recompile for every batch's token count.
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    model.encoder.padding_free = True
    fast = optimize_for_inference(model, backend="aot_eager", report=None)
    g = torch.Generator().manual_seed(1)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for _ in range(3):
        lengths = torch.randint(3, 17, (4,), generator=g)
        mask = (torch.arange(16)[None] < lengths[:, None]).long()
        ids = torch.randint(1, 30, (4, 16), generator=g) * mask
        got = fast(input_ids=ids, attention_mask=mask)
        with torch.no_grad():
            want = model(input_ids=ids, attention_mask=mask)
        real = mask.bool()
        torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
    assert not torch._dynamo.utils.counters["graph_break"]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()
