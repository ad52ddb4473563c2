"""Int8 linear layers: on CPU the quantized engine's product stays within the bound that 8-bit weights and 8-bit
per-call activations allow; off the engine the dequantised product is exact; copies and device moves keep working;
a stack (and a tied output projection) is swapped in place with its structure kept."""

from __future__ import annotations

import copy
import gc

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers import BlockSpec, TransformerStack
from alicemind.core.ops.compiling import trace_calls
from alicemind.core.ops.int8 import _PACKED, Int8Linear, quantize_linear_weights


def _activation_step(x: torch.Tensor) -> torch.Tensor:
    """The per-call activation quantisation step: the range [min(x, 0), max(x, 0)] over 255 levels."""
    return (x.max().clamp(min=0) - x.min().clamp(max=0)) / 255


def test_int8_product_is_within_the_quantisation_bound():
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    quantized = Int8Linear.from_linear(linear)
    assert quantized.weight_int8.dtype == torch.int8 and int(quantized.weight_int8.abs().max()) == 127
    x = torch.randn(3, 5, 96)
    with torch.no_grad():
        got = quantized(x)
        dequantized = F.linear(x, quantized.dequantized_weight(), linear.bias)
        full = linear(x)
    assert got.shape == (3, 5, 40) and got.dtype == torch.float32
    # Activations are off by at most half a step each, so an output moves by step / 2 * sum_k |w_k| (+ rounding).
    activation_bound = _activation_step(x) / 2 * quantized.dequantized_weight().abs().sum(1)
    assert bool(((got - dequantized).abs() <= activation_bound + 1e-4).all())
    # Weights are off by at most half their row's step: sum_k |x_k| * s_row / 2 more.
    weight_bound = x.abs().sum(-1, keepdim=True) * quantized.weight_scale / 2
    assert bool(((got - full).abs() <= activation_bound + weight_bound + 1e-4).all())
    assert float((got - full).abs().max()) > 0  # a real approximation, not the fp32 weights
    assert float((got - full).norm() / full.norm()) < 0.02


def test_off_engine_dtypes_use_the_exact_dequantised_product():
    torch.manual_seed(0)
    linear = nn.Linear(16, 8).double()
    quantized = Int8Linear.from_linear(linear)
    x = torch.randn(4, 16, dtype=torch.float64)
    with torch.no_grad():
        got = quantized(x)
        want = F.linear(x, quantized.dequantized_weight().double(), linear.bias)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_copies_and_moves_repack_and_agree():
    torch.manual_seed(0)
    quantized = Int8Linear(torch.randn(12, 20))  # from a bare weight (a tied table): no bias
    x = torch.randn(2, 20)
    with torch.no_grad():
        want = quantized(x)
        assert quantized._key in _PACKED
        twin = copy.deepcopy(quantized)
        assert twin._key in _PACKED and twin._key != quantized._key  # its own packed weight
        torch.testing.assert_close(twin(x), want, atol=0, rtol=0)
        old_key = quantized._key
        quantized.to("cpu", torch.float32)
        assert quantized._key != old_key and old_key not in _PACKED  # repacked; the old copy is released
        torch.testing.assert_close(quantized(x), want, atol=0, rtol=0)
        key = twin._key
        del twin
        gc.collect()
        assert key not in _PACKED  # a collected map takes its packed weight with it


def test_int8_maps_trace_as_one_graph_with_the_network_around_them():
    """Under torch.compile each int8 map is one opaque op: norms and activations compile around it, in one graph
    for every batch of a shape, with the eager outputs; inductor's code gives them too (fp32 rounding apart)."""
    torch.manual_seed(0)
    stack = TransformerStack(BlockSpec(hidden_size=32, num_heads=4, intermediate_size=64), 2).eval()
    quantize_linear_weights(stack)
    batches = [(torch.randn(2, 5, 32),) for _ in range(3)]
    with torch.no_grad():
        trace = trace_calls(lambda x: stack(x).last_hidden_state, batches)
        eager = [stack(x).last_hidden_state for (x,) in batches]
        inductor = torch.compile(lambda x: stack(x).last_hidden_state, fullgraph=True)(batches[0][0])
    assert trace.graphs == 1
    for got, want in zip(trace.outputs, eager, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(inductor, eager[0], atol=1e-4, rtol=1e-4)


class _TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.hidden = nn.Linear(16, 16)
        self.int8_output_projection = None

    def tied_output_projection(self):
        return self.embed.weight, None

    def forward(self, ids):
        h = self.hidden(self.embed(ids))
        if self.int8_output_projection is not None:
            return self.int8_output_projection(h)
        return F.linear(h, self.embed.weight)


def test_tied_output_projection_gets_an_int8_copy_and_the_lookup_stays_fp32():
    torch.manual_seed(0)
    model = _TiedLM().eval()
    ids = torch.randint(0, 30, (2, 7))
    with torch.no_grad():
        want = model(ids)
        assert quantize_linear_weights(model) == 2
        got = model(ids)
    assert isinstance(model.int8_output_projection, Int8Linear) and model.embed.weight.dtype == torch.float32
    assert model.int8_output_projection.out_features == 30
    assert 0 < float((got - want).norm() / want.norm()) < 0.02
    assert quantize_linear_weights(_TiedLM(), skip=("",)) == 0  # skipping the root skips the tied table too


def test_quantize_linear_weights_swaps_every_linear_but_the_skipped_ones():
    torch.manual_seed(0)
    stack = TransformerStack(BlockSpec(32, 2, 64, dropout=0.0, attention_dropout=0.0, norm_first=True), 2).eval()
    x, mask = torch.randn(2, 6, 32), torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        want = stack(x, padding_mask=mask).last_hidden_state
    swapped = quantize_linear_weights(stack, skip=("layers.1.ffn",))
    assert swapped == 2 * 4 + 2  # q/k/v/out in both layers, the feed-forward's two of layer 0 only
    assert isinstance(stack.layers[0].ffn.fc_in, Int8Linear)
    assert isinstance(stack.layers[1].self_attn.q_proj, Int8Linear)
    assert type(stack.layers[1].ffn.fc_in) is nn.Linear
    with torch.no_grad():
        got = stack(x, padding_mask=mask).last_hidden_state
    relative = float((got - want).norm() / want.norm())
    assert 0 < relative < 0.02


def test_hooks_on_a_replaced_linear_move_to_its_int8_map_and_their_handles_still_work():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    seen = []
    handle = model[0].register_forward_hook(lambda module, args, out: seen.append(type(module)))
    quantize_linear_weights(model)
    with torch.no_grad():
        model(torch.randn(2, 8))
    assert seen == [Int8Linear]
    handle.remove()
    with torch.no_grad():
        model(torch.randn(2, 8))
    assert seen == [Int8Linear]
