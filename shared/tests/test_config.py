"""core.config: JSON round trip, unknown keys preserved, presets as data, clear errors."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest

from alicemind.core.config import ModelConfig, list_presets, register_preset


@dataclass
class ToyConfig(ModelConfig):
    model_type: ClassVar[str] = "toy"
    hidden_size: int = 8
    num_layers: int = 2

    def validate(self):
        if self.hidden_size <= 0:
            raise ValueError("hidden_size must be positive")


register_preset("toy", "toy.small", {"hidden_size": 4, "num_layers": 1})


def test_round_trip_keeps_unknown_keys(tmp_path):
    cfg = ToyConfig.from_dict({"hidden_size": 16, "attention_type": "self", "transformers_version": "4.0"})
    assert cfg.hidden_size == 16 and cfg.extra == {"attention_type": "self"}
    cfg.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "toy" and data["attention_type"] == "self" and "transformers_version" not in data
    again = ToyConfig.from_pretrained(tmp_path)
    assert again == cfg and again.extra == cfg.extra


def test_presets_and_errors(tmp_path):
    assert ToyConfig.from_pretrained("toy.small").hidden_size == 4
    assert ToyConfig.from_preset("toy.small", num_layers=3).num_layers == 3
    assert "toy.small" in list_presets("toy")["toy"]
    with pytest.raises(KeyError, match="Did you mean"):
        ToyConfig.from_preset("toy.smal")
    with pytest.raises(TypeError, match="no field"):
        ToyConfig.from_preset("toy.small", hidden=3)
    with pytest.raises(ValueError, match="positive"):
        ToyConfig.from_dict({"hidden_size": 0})
    with pytest.raises(ValueError, match="re-?registered|already registered"):
        register_preset("toy", "toy.small", {"hidden_size": 5})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ToyConfig.from_json_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        ToyConfig.from_json_file(tmp_path / "missing.json")
