"""SDCUP configuration: the UER encoder's JSON keys under Hugging Face names, the NL2SQL head, the SDP scorer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alicemind.core.config import ModelConfig, register_preset

# Fixed in the original code (uer/layers/embeddings.py, utils_wikisql.py), not read from the JSON files.
UER_MAX_POSITIONS = 512
UER_SEGMENT_VOCAB = 3  # 0 = padding, 1 = question, 2 = schema
UER_LAYER_NORM_EPS = 1e-6  # added to the population std, not to the variance
# Relation vocabulary of the CBANK `struct_label` field (models-language.md §5.2).
DEPENDENCY_LABELS = ("null", "scol", "agg", "wcol", "val", "op", "sort_col", "sort_op", "sort_value")


@dataclass
class SdcupConfig(ModelConfig):
    """UER BERT (post-LN, erf gelu, UER LayerNorm) + SQLova head sizes + the biaffine dependency scorer sizes."""

    model_type: ClassVar[str] = "sdcup"
    family: ClassVar[str] = "sdcup"

    vocab_size: int = 21128
    hidden_size: int = 768  # UER emb_size == hidden_size
    num_hidden_layers: int = 12  # layers_num
    num_attention_heads: int = 12  # heads_num
    intermediate_size: int = 3072  # feedforward_size
    hidden_act: str = "geluerf"
    hidden_dropout_prob: float = 0.1  # dropout
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = UER_MAX_POSITIONS
    type_vocab_size: int = UER_SEGMENT_VOCAB
    layer_norm_eps: float = UER_LAYER_NORM_EPS
    initializer_range: float = 0.02
    # None: packed in eager training steps on ragged batches; True: always; False: never.
    padding_free: bool | None = None
    max_seq_length: int = 350  # the original's max_seq_length; longer inputs are an error, never truncated
    # SQLova head (Seq2SQL_v1 defaults: hS 100, lS 2, dr 0.3; at most 4 select columns and 6 conditions).
    head_hidden_size: int = 100
    head_lstm_layers: int = 2
    head_dropout: float = 0.3
    max_select_columns: int = 4
    max_conditions: int = 6
    question_knowledge_dim: int = 20
    header_knowledge_dim: int = 8
    num_target_layers: int = 1
    # Schema-dependency scorer (the commented-out Biaffine of TableTextPretraining: arc 400, rel 100, 9 labels).
    arc_size: int = 400
    rel_size: int = 100
    num_dependency_labels: int = len(DEPENDENCY_LABELS)

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.type_vocab_size < 3:
            raise ValueError("SDCUP needs 3 segment ids (0 padding, 1 question, 2 schema)")
        if self.max_seq_length > self.max_position_embeddings:
            raise ValueError(f"max_seq_length {self.max_seq_length} > {self.max_position_embeddings} positions")
        if not 1 <= self.num_target_layers <= self.num_hidden_layers:
            raise ValueError(f"num_target_layers must be in 1..{self.num_hidden_layers}")


# Released: SDCUP/models/bert_{base,large}_config.json (the checkpoints sdcup_{base,large}_model.bin-N).
for _name, _values in {
    "sdcup.base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "sdcup.large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "sdcup.lite": dict(hidden_size=768, num_hidden_layers=4, num_attention_heads=12, intermediate_size=3072),
    # Test-sized.
    "sdcup.test": dict(
        vocab_size=200,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        max_seq_length=128,
        head_hidden_size=16,
        head_lstm_layers=1,
        arc_size=16,
        rel_size=8,
    ),
}.items():
    register_preset("sdcup", _name, _values)
