"""LatticeBERT configuration (the fields of the released ``labert_config.json``) and the released sizes as presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alicemind.core.config import ModelConfig, register_preset

# The released configs say "gelu", which in LatticeBERT's TF code is the tanh approximation (errata 2).
RELEASED_GELU = "gelu_tanh"


@dataclass
class LatticeBertConfig(ModelConfig):
    """Architecture of LatticeBERT: factorised embeddings, no input positions, a lattice position bias shared by
    every layer, post-LN blocks. ``vocab_size`` counts characters plus lexicon words (or clusters)."""

    model_type: ClassVar[str] = "latticebert"
    family: ClassVar[str] = "latticebert"

    vocab_size: int = 21128
    embedding_size: int = 128
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = RELEASED_GELU
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512  # rows of the start/end position tables (lattice positions, not units)
    type_vocab_size: int = 16
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    max_relative_position: int = 128  # relative distances are clipped to +-this (tables of 2*128+1 rows)
    num_labels: int = 2
    id2label: dict[str, str] | None = None
    label2id: dict[str, int] | None = None
    task_specs: list[dict] | None = None

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.max_relative_position < 1:
            raise ValueError(f"max_relative_position must be >= 1, got {self.max_relative_position}")
        if self.hidden_act == "gelu":
            # A shared lookup of "gelu" is exact erf; LatticeBERT's "gelu" is tanh. Name the function exactly.
            raise ValueError("hidden_act 'gelu' is ambiguous: use 'gelu_tanh' (the released models) or 'geluerf'")
        if self.id2label is not None:
            self.id2label = {str(k): str(v) for k, v in self.id2label.items()}


# Released: README table of LatticeBERT (labert_config.json in each tarball); vocab = 21128 chars + the lexicon.
_BASE = dict(embedding_size=128, max_position_embeddings=512, type_vocab_size=16, hidden_act=RELEASED_GELU)
for _name, _values in {
    "latticebert.tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "latticebert.lite": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048),
    "latticebert.base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    # Test-sized.
    "latticebert.test": dict(
        vocab_size=200,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    ),
}.items():
    register_preset("latticebert", _name, {**_BASE, **_values})
