"""StructBERT configuration (Hugging Face ``BertConfig`` field names) and the released sizes as presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alicemind.core.config import ModelConfig, register_preset


@dataclass
class StructBertConfig(ModelConfig):
    """Architecture of StructBERT; identical to BERT (post-LN), so ``config.json`` is a valid ``BertConfig``."""

    # config.json says "bert" so that transformers' BertModel/AutoModel read our folders unchanged.
    model_type: ClassVar[str] = "bert"
    family: ClassVar[str] = "structbert"

    vocab_size: int = 30522
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: float | None = None
    # Heads: one entry per task for multi-task classification (1 = regression); num_labels for single-task heads.
    num_labels: int = 2
    task_num_labels: list[int] | None = None
    # Label names of a single-task head (Hugging Face fields: id2label keys are the class ids as strings), and
    # what each head was trained on (core.data.task_to_dict), so a fine-tuned folder describes itself.
    id2label: dict[str, str] | None = None
    label2id: dict[str, int] | None = None
    task_specs: list[dict] | None = None
    # Run linear layers and the FFN on packed real tokens only (same outputs, less work on padded batches).
    # None: packed in eager training steps on ragged batches; True: always; False: never.
    padding_free: bool | None = None

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.task_num_labels is not None and not self.task_num_labels:
            raise ValueError("task_num_labels must list at least one task")
        if self.id2label is not None:
            # JSON keys are strings (transformers writes them so). The head's size comes from num_labels or, when
            # loading, the weights' shape; transformers folders often carry id2label without num_labels.
            self.id2label = {str(k): str(v) for k, v in self.id2label.items()}


_BASE = dict(hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02)
for _name, _values in {
    # Released: StructBERT/config/large_bert_config.json and ch_large_bert_config.json.
    "structbert.en.large": dict(
        vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
    "structbert.ch.large": dict(
        vocab_size=21128, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
    # Not released; BERT-base shape for experiments and laptop-scale pre-training.
    "structbert.en.base": dict(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
    "structbert.ch.base": dict(
        vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
    # Test-sized.
    "structbert.tiny": dict(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    ),
}.items():
    register_preset("structbert", _name, {**_BASE, **_values})
