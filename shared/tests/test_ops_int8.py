"""Weight-only int8 linear layers: the kernel computes exactly the dequantised product, the rounding error stays
within half a quantisation step per weight, and a stack swapped in place keeps its structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alicemind.core.layers import BlockSpec, TransformerStack
from alicemind.core.ops.int8 import Int8WeightLinear, quantize_linear_weights


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_int8_kernel_equals_the_dequantised_product_and_error_is_bounded():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 24)
    quantized = Int8WeightLinear(linear)
    assert quantized.weight_int8.dtype == torch.int8 and int(quantized.weight_int8.abs().max()) == 127
    x = torch.randn(3, 5, 48)
    with torch.no_grad():
        got = quantized(x)
        exact = F.linear(x, quantized.dequantized_weight(), linear.bias)
        full = linear(x)
    torch.testing.assert_close(got, exact, atol=1e-5, rtol=1e-5)
    # |w - q * s| <= s / 2 per weight, so each output is off by at most sum_k |x_k| * s_row / 2.
    bound = x.abs().sum(-1, keepdim=True) * quantized.weight_scale / 2
    assert bool(((got - full).abs() <= bound + 1e-6).all())
    assert float((got - full).abs().max()) > 0  # it is a real approximation, not the fp32 weights


def test_quantize_linear_weights_swaps_every_linear_but_the_skipped_ones():
    torch.manual_seed(0)
    stack = TransformerStack(BlockSpec(32, 2, 64, dropout=0.0, attention_dropout=0.0, norm_first=True), 2).eval()
    x, mask = torch.randn(2, 6, 32), torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        want = stack(x, padding_mask=mask).last_hidden_state
    swapped = quantize_linear_weights(stack, skip=("layers.1.ffn",))
    assert swapped == 2 * 4 + 2  # q/k/v/out in both layers, the feed-forward's two of layer 0 only
    assert isinstance(stack.layers[0].ffn.fc_in, Int8WeightLinear)
    assert isinstance(stack.layers[1].self_attn.q_proj, Int8WeightLinear)
    assert type(stack.layers[1].ffn.fc_in) is torch.nn.Linear
    with torch.no_grad():
        got = stack(x, padding_mask=mask).last_hidden_state
    relative = float((got - want).norm() / want.norm())
    assert 0 < relative < 0.02
