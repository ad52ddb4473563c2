"""Per-block sizes in config.json (``layer_sizes``): honoured by from_pretrained, absent = built as before."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from alicemind.core.config import ModelConfig
from alicemind.core.layers import BlockSpec, TransformerStack
from alicemind.core.layers.layer_sizes import apply_layer_sizes, layer_sizes_of
from alicemind.core.modeling import PreTrainedModel


@dataclasses.dataclass
class SizesConfig(ModelConfig):
    model_type = "test-layer-sizes"
    hidden_size: int = 16
    num_attention_heads: int = 4
    intermediate_size: int = 24
    fused: bool = False


class SizesModel(PreTrainedModel):
    config_class = SizesConfig

    def __init__(self, config: SizesConfig):
        super().__init__(config)
        spec = BlockSpec(config.hidden_size, config.num_attention_heads, config.intermediate_size, dropout=0.0,
                         attention_dropout=0.0, fused_qkv=config.fused)  # fmt: skip
        self.encoder = TransformerStack(spec, 2)

    def forward(self, x):
        return self.encoder(x).last_hidden_state


def _kept(block, heads, neurons, hd=4):
    """A reference: ``block``'s weights restricted to ``heads`` and ``neurons`` (what a pruner keeps)."""
    rows = torch.tensor([h * hd + d for h in heads for d in range(hd)])
    attn, ffn = block.self_attn, block.ffn
    out = {}
    if getattr(attn, "qkv_proj", None) is not None:
        third = attn.qkv_proj.out_features // 3
        fused = torch.cat([rows + i * third for i in range(3)])
        out["self_attn.qkv_proj.weight"] = attn.qkv_proj.weight[fused]
        out["self_attn.qkv_proj.bias"] = attn.qkv_proj.bias[fused]
    else:
        for name in ("q_proj", "k_proj", "v_proj"):
            out[f"self_attn.{name}.weight"] = getattr(attn, name).weight[rows]
            out[f"self_attn.{name}.bias"] = getattr(attn, name).bias[rows]
    out["self_attn.out_proj.weight"] = attn.out_proj.weight[:, rows]
    keep = torch.tensor(neurons)
    out["ffn.fc_in.weight"], out["ffn.fc_in.bias"] = ffn.fc_in.weight[keep], ffn.fc_in.bias[keep]
    out["ffn.fc_out.weight"] = ffn.fc_out.weight[:, keep]
    return out


@pytest.mark.parametrize("fused", [False, True])
def test_from_pretrained_builds_the_recorded_sizes_and_matches_zeroed_full_model(tmp_path, fused):
    torch.manual_seed(0)
    full = SizesModel(SizesConfig(fused=fused)).eval()
    plan = [([0, 2, 3], [1, 5, 7, 8, 20]), ([1], list(range(0, 24, 2)))]
    x = torch.randn(2, 5, 16)
    # the reference: the full model with the dropped heads' and neurons' output columns zeroed
    zeroed = SizesModel(SizesConfig(fused=fused)).eval()
    zeroed.load_state_dict(full.state_dict())
    with torch.no_grad():
        for block, (heads, neurons) in zip(zeroed.encoder.layers, plan):
            drop_h = [h for h in range(4) if h not in heads]
            for h in drop_h:
                block.self_attn.out_proj.weight[:, h * 4 : (h + 1) * 4] = 0
            drop_n = [n for n in range(24) if n not in neurons]
            block.ffn.fc_out.weight[:, drop_n] = 0
        expected = zeroed(x)
    state = full.state_dict()
    for i, (block, (heads, neurons)) in enumerate(zip(full.encoder.layers, plan)):
        for key, value in _kept(block, heads, neurons).items():
            state[f"encoder.layers.{i}.{key}"] = value.detach().clone()
    sizes = [{"module": f"encoder.layers.{i}", "num_attention_heads": len(h), "intermediate_size": len(n)}
             for i, (h, n) in enumerate(plan)]  # fmt: skip
    small = apply_layer_sizes(SizesModel(SizesConfig(fused=fused)), sizes)
    assert layer_sizes_of(small) == sizes
    small.load_state_dict(state, strict=True)
    small.config.extra["layer_sizes"] = sizes
    small.save_pretrained(tmp_path / "small")
    assert json.loads((tmp_path / "small" / "config.json").read_text())["layer_sizes"] == sizes
    loaded = SizesModel.from_pretrained(tmp_path / "small").eval()
    assert loaded.num_parameters() == small.num_parameters() < full.num_parameters()
    assert [b.self_attn.num_heads for b in loaded.encoder.layers] == [3, 1]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-5)


def test_without_layer_sizes_nothing_changes(tmp_path):
    torch.manual_seed(0)
    model = SizesModel(SizesConfig())
    model.save_pretrained(tmp_path / "m")
    loaded = SizesModel.from_pretrained(tmp_path / "m")
    assert (
        layer_sizes_of(loaded)
        == layer_sizes_of(model)
        == [{"module": f"encoder.layers.{i}", "num_attention_heads": 4, "intermediate_size": 24} for i in range(2)]
    )
    assert "layer_sizes" not in json.loads((tmp_path / "m" / "config.json").read_text())


def test_bad_layer_sizes_are_one_line_errors():
    model = SizesModel(SizesConfig())
    with pytest.raises(ValueError, match="does not have"):
        apply_layer_sizes(model, [{"module": "encoder.layers.7", "num_attention_heads": 1, "intermediate_size": 4}])
    with pytest.raises(ValueError, match="not a TransformerBlock"):
        apply_layer_sizes(model, [{"module": "encoder", "num_attention_heads": 1, "intermediate_size": 4}])
    with pytest.raises(ValueError, match=">= 1 head"):
        apply_layer_sizes(model, [{"module": "encoder.layers.0", "num_attention_heads": 0, "intermediate_size": 4}])
    assert isinstance(model.encoder.layers[0].ffn.fc_in, nn.Linear)
