"""Padding never changes real tokens' outputs (unless the original's padding bug is asked for); heads' shapes."""

from __future__ import annotations

import pytest
import torch

from alicemind.structurallm import StructuralLMConfig, StructuralLMForQuestionAnswering, StructuralLMModel


def _inputs(length):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 250, (1, length), generator=gen)
    corner = torch.randint(0, 500, (1, length, 2), generator=gen)
    return ids, torch.cat([corner, corner + 100], -1)


def test_padding_is_masked_and_the_original_bug_is_a_switch():
    torch.manual_seed(0)
    model = StructuralLMModel(StructuralLMConfig.from_preset("structurallm.test")).eval()
    ids, bbox = _inputs(6)
    padded_ids = torch.cat([ids, torch.ones(1, 3, dtype=torch.long)], 1)
    padded_box = torch.cat([bbox, torch.zeros(1, 3, 4, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    with torch.no_grad():
        alone = model(ids, bbox=bbox).last_hidden_state
        padded = model(padded_ids, bbox=padded_box, attention_mask=mask).last_hidden_state[:, :6]
        assert (alone - padded).abs().max() < 1e-5
        model.config.attend_padding = True  # the original: input_mask padded with 1, padding attended
        buggy = model(padded_ids, bbox=padded_box, attention_mask=mask).last_hidden_state[:, :6]
        assert (alone - buggy).abs().max() > 1e-3


def test_qa_head_and_too_long_input():
    model = StructuralLMForQuestionAnswering(StructuralLMConfig.from_preset("structurallm.test")).eval()
    ids, bbox = _inputs(10)
    out = model(ids, bbox=bbox, start_positions=torch.tensor([2]), end_positions=torch.tensor([4]))
    assert out.logits[0].shape == (1, 10) and out.loss > 0
    ids, bbox = _inputs(65)  # the test preset holds 66 - 2 = 64 positions
    with pytest.raises(ValueError, match="longer than the model's 64"):
        model(ids, bbox=bbox)
