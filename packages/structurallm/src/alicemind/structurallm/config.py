"""StructuralLM configuration (the BERT fields of the released ``config.json``) and the released size as a preset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alicemind.core.config import ModelConfig, register_preset

# StructuralLM's TF "gelu" is the exact erf form (its tanh code is dead; errata 10); the release names it "geluerf".
RELEASED_GELU = "geluerf"


@dataclass
class StructuralLMConfig(ModelConfig):
    """Architecture of StructuralLM: RoBERTa-large words and 1-D positions (rows from 2 for every slot), four
    separate 2-D coordinate tables (x0, y0, x1, y1 in 0..``max_2d_position_embeddings``-1), a ``bbox_embeddings``
    table indexed by each token's ``pos_bbox`` id, LayerNorm eps 1e-5, post-LN blocks."""

    model_type: ClassVar[str] = "structurallm"
    family: ClassVar[str] = "structurallm"

    vocab_size: int = 50265
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = RELEASED_GELU
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = 514  # RoBERTa style: rows 2.. are used, so 512 tokens at most
    max_2d_position_embeddings: int = 1001  # coordinates are integers in [0, 1000]
    bbox_vocab_size: int = 201  # rows of bbox_embeddings (pos_bbox ids 0..200; 0 = special tokens / padding)
    use_position_embeddings: bool = True  # the FUNSD script's --use_position_embeddings
    use_bbox_pos: bool = True  # the fine-tuning default of the original (adds bbox_embeddings[pos_bbox])
    position_offset: int = 2  # first row of the 1-D table; every slot uses row offset + index (errata 3)
    pad_token_id: int = 1
    type_vocab_size: int = 2  # the release has the table, but RoBERTa mode never adds it (kept for config.json)
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    attend_padding: bool = False  # True reproduces the original, whose RoBERTa-mode input_mask pads with 1
    # None: packed in eager training steps on ragged batches; True: always; False: never.
    padding_free: bool | None = None
    num_cpc_areas: int = 16  # cell position classification: the page split into N equal areas (a square grid)
    attention_type: str = "self"  # a field of the released config.json; unused
    num_labels: int = 2
    id2label: dict[str, str] | None = None
    label2id: dict[str, int] | None = None

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act == "gelu":
            # A shared lookup of "gelu" may mean tanh elsewhere; StructuralLM's is exact erf. Name it exactly.
            self.hidden_act = RELEASED_GELU
        grid = round(self.num_cpc_areas**0.5)
        if grid * grid != self.num_cpc_areas:
            raise ValueError(f"num_cpc_areas must be a square (a grid of equal areas), got {self.num_cpc_areas}")
        if self.max_position_embeddings <= self.position_offset:
            raise ValueError("max_position_embeddings must exceed position_offset")
        if self.id2label is not None:
            self.id2label = {str(k): str(v) for k, v in self.id2label.items()}

    @property
    def max_coordinate(self) -> int:
        """The largest 2-D coordinate the tables hold (1000 for the release)."""
        return self.max_2d_position_embeddings - 1

    @property
    def max_tokens(self) -> int:
        """The longest sequence the 1-D position table holds (512 for the release)."""
        return self.max_position_embeddings - self.position_offset


# Released: StructuralLM/tokenizer_model/config.json (models-multimodal.md 2.1): RoBERTa-large sized.
register_preset("structurallm", "structurallm.en.large", {})
# Test-sized.
register_preset(
    "structurallm",
    "structurallm.test",
    dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
         max_position_embeddings=66, bbox_vocab_size=21, attention_probs_dropout_prob=0.0),
)  # fmt: skip
