"""StructVBERT configuration (the BERT fields of the released ``bert_config.json`` plus the visual input) and the
released size as a preset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alicemind.core.config import ModelConfig, register_preset


@dataclass
class StructVBertConfig(ModelConfig):
    """A one-stream BERT over ``[regions] + [text]``: BERT-base sizes, region features of ``visual_feat_dim``
    with ``visual_pos_dim`` box coordinates, at most ``max_objects`` regions per image.

    ``embedding_padding_idx=True`` keeps the original's quirk: position 0 and token type 0 get no gradient
    (all three text tables are built with ``padding_idx=0``). ``answers`` lists the VQA/GQA answer vocabulary
    (index = logit row), so a fine-tuned folder alone serves ``predict``.
    """

    model_type: ClassVar[str] = "structvbert"
    family: ClassVar[str] = "structvbert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"  # exact erf GeLU (the original's gelu)
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    visual_feat_dim: int = 2048
    visual_pos_dim: int = 4
    max_objects: int = 100
    max_text_length: int = 20  # the original's MAX_VQA_LENGTH
    embedding_padding_idx: bool = True
    # None: packed in eager training steps on ragged batches; True: always; False: never.
    padding_free: bool | None = None
    num_object_labels: int = 1600  # Visual Genome object classes of the detector
    num_attribute_labels: int = 400
    answers: list[str] | None = None

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.visual_pos_dim not in (4, 5):
            raise ValueError(
                f"visual_pos_dim must be 4 (x1,y1,x2,y2) or 5 (with the box area), got {self.visual_pos_dim}"
            )
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {self.max_objects}")

    @property
    def num_answers(self) -> int:
        return len(self.answers) if self.answers else 0


# Released: StructVBERT README (structvbert.en.base, bert_config.json in pretrained_model.tar.gz: BERT-base uncased).
register_preset("structvbert", "structvbert.en.base", {})
# Test-sized.
register_preset(
    "structvbert",
    "structvbert.test",
    dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
         max_position_embeddings=64, visual_feat_dim=16, max_objects=12, num_object_labels=10,
         num_attribute_labels=6),
)  # fmt: skip
