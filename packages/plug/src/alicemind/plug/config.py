"""PLUG configuration: PALM's sofa-zh topology (pre-LN encoder and decoder, fused QKV, tied output) at 27B, and
the released size as a preset (reference models-language.md section 4.1, errata section 5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from alicemind.core.config import register_preset
from alicemind.palm.config import PalmConfig

# sofa PlugNLGConfig / ModelScope plug config.json field -> ours. Fields not listed are training flags of the
# original (deepspeed, fp16, lr_decay_style, pruning_* ...) that say nothing about the architecture.
SOFA_FIELDS = {
    "vocab_size": "vocab_size",
    "original_vocab_size": "real_vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "hidden_act": "hidden_act",
    "hidden_dropout_prob": "hidden_dropout_prob",
    "attention_probs_dropout_prob": "attention_probs_dropout_prob",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "initializer_range": "initializer_range",
    "layernorm_epsilon": "layer_norm_eps",
    "pre_ln": "pre_ln",
    "attn_separate": "attn_separate",
    "dec_hidden_layers": "dec_hidden_layers",
}


@dataclass
class PlugConfig(PalmConfig):
    """A PALM sofa-zh config under PLUG's name; only the released sizes and the defaults differ."""

    model_type: ClassVar[str] = "plug"

    layer_norm_eps: float = 1e-5  # PLUG/arguments.py --layernorm-epsilon default (the model class says 1e-12)
    hidden_size: int = 8192
    num_hidden_layers: int = 24
    num_attention_heads: int = 128
    intermediate_size: int = 32768
    dec_hidden_layers: int = 6
    real_vocab_size: int | None = 21128
    # Inference in the original applies encoder.LayerNorm twice (errata 5); fine-tuning with activation
    # checkpointing applied it once. Generation recipes set this True to reproduce the released outputs.
    encoder_final_norm_twice: bool = True

    def validate(self) -> None:
        if self.architecture != "sofa-zh":
            raise ValueError(f"PLUG has the sofa-zh topology only, got architecture={self.architecture!r}")
        super().validate()

    @classmethod
    def from_sofa_dict(cls, values: Mapping[str, Any], **overrides: Any) -> PlugConfig:
        """Our config from the released sofa/ModelScope ``config.json`` (``layernorm_epsilon``, ``original_vocab_size``...)."""
        if values.get("pre_ln") is False:
            raise ValueError("this config.json says pre_ln=false: PLUG's released model is pre-LN")
        known = {ours: values[theirs] for theirs, ours in SOFA_FIELDS.items() if theirs in values}
        return cls(**{**known, **overrides})


# Source: PLUG/generate_plug.py get_model_tokenizer (hard-coded sizes) and PLUG/arguments.py defaults;
# vocab 21128 padded to a multiple of 128 x 8 (make_vocab_size_divisible_by x MP) = 21504.
PLUG_27B = dict(
    architecture="sofa-zh",
    vocab_size=21504,
    real_vocab_size=21128,
    hidden_size=8192,
    num_hidden_layers=24,
    num_attention_heads=128,
    intermediate_size=32768,
    hidden_act="gelu",
    max_position_embeddings=2048,
    type_vocab_size=3,
    initializer_range=0.00707,
    layer_norm_eps=1e-5,
    pre_ln=True,
    encoder_final_norm_twice=True,
    dec_hidden_layers=6,
    pad_token_id=0,
    bos_token_id=101,
    eos_token_id=102,
)
# The released layout at test scale: vocab divisible by 8 ranks, heads divisible by 8 (TP degrees 1, 2, 4, 8).
PLUG_TINY = {
    **PLUG_27B,
    "vocab_size": 128,
    "real_vocab_size": 120,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "dec_hidden_layers": 2,
}
register_preset("plug", "plug.27b", PLUG_27B)
register_preset("plug", "plug.tiny", PLUG_TINY)
