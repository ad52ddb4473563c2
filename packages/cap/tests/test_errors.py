"""Bad input: one clear message each."""

from __future__ import annotations

import pytest
import torch

from alicemind.cap import (
    AdapterNotFoundError,
    CapConfig,
    CapObjective,
    MovementPruner,
    StructuredPruner,
    check_sparsity,
    pruning_counts,
)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "x", None])
def test_sparsity_outside_unit_interval_is_refused(bad, tiny):
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        check_sparsity(bad)
    with pytest.raises(ValueError, match=r"final_sparsity must be"):
        CapConfig(method="cap-m", final_sparsity=bad)
    with pytest.raises(ValueError, match=r"sparsities entry must be"):
        CapConfig(sparsities=(0.1, bad))
    with pytest.raises(ValueError, match=r"final_sparsity must be"):
        MovementPruner(tiny.core(), final_sparsity=bad, total_steps=10)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        pruning_counts([bad], 144)


def test_sparsity_sequence_must_be_cumulative():
    with pytest.raises(ValueError, match="cumulative"):
        CapConfig(sparsities=(0.5, 0.2))


def test_model_without_a_known_layout_names_what_to_provide():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(AdapterNotFoundError, match=r"no CAP adapter recognises Sequential.*pass adapter=") as err:
        StructuredPruner(model)
    assert "attention.self.query" in str(err.value) and "TransformerBlock" in str(err.value)
    with pytest.raises(AdapterNotFoundError):
        MovementPruner(model, total_steps=1)


def test_teacher_with_another_label_count_is_refused(tiny):
    with pytest.raises(ValueError, match="teacher has 2 labels and the student 3"):
        CapObjective(tiny.core(num_labels=3), CapConfig(), num_examples=4, teacher=tiny.core(num_labels=2))
    with pytest.raises(ValueError, match="needs the fine-tuned teacher"):
        CapObjective(tiny.core(), CapConfig(), num_examples=4)


def test_unknown_config_key_and_method():
    with pytest.raises(ValueError, match="unknown CAP setting.*bogus"):
        CapConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="method must be one of cap-f, cap-m, cap-soft"):
        CapConfig(method="cap-x")


def test_too_many_heads_for_protection(tiny):
    pruner = StructuredPruner(tiny.core())
    with pytest.raises(ValueError, match="fewer than 1 per layer"):
        pruner.prune_to(0.9, torch.rand(2, 4), torch.rand(2, 64))
