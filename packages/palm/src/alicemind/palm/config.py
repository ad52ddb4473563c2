"""PALM configuration for both released code bases, and the released sizes as presets.

``architecture`` picks the topology:

* ``"sofa-zh"`` (Chinese PALM in sofa): pre-LN BERT encoder with fused QKV; pre-LN decoder of the same width that
  reads its inputs through the *encoder's* embedding module; logits tied to the word embeddings, no bias.
* ``"presumm-en"`` (English PALM, PreSumm fork): post-LN RoBERTa encoder; pre-LN decoder (``dec_*`` sizes, LN eps
  1e-6, tanh-GELU) with its own copy of the word embeddings scaled by sqrt(d) plus sinusoidal positions; a
  generator tied to the decoder embeddings with a bias; optionally a pointer-generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alicemind.core.config import ModelConfig, register_preset

ARCHITECTURES = ("sofa-zh", "presumm-en")


@dataclass
class PalmConfig(ModelConfig):
    """Architecture of a PALM encoder-decoder. Field names follow sofa's ``PalmConfig`` / Hugging Face BERT."""

    model_type: ClassVar[str] = "palm"

    architecture: str = "sofa-zh"
    # Encoder (and, for sofa-zh, the decoder too).
    vocab_size: int = 21504
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 2048
    type_vocab_size: int = 3
    initializer_range: float = 0.00707
    layer_norm_eps: float = 1e-12
    pre_ln: bool = True
    attn_separate: bool = False  # sofa: encoder self-attention as query/key/value instead of fused query_key_value
    # RoBERTa counts positions from pad_token_id + 1 (2); BERT-style encoders from 0.
    position_offset: int = 0
    # sofa's PalmEncoder applies its final LayerNorm twice when called with output_all_encoded_layers=False,
    # which is how PalmModel calls it; the released weights were trained and are evaluated that way.
    encoder_final_norm_twice: bool = False
    # Run the encoder's linear layers, norms and FFN on the real tokens of a padded batch only (same outputs).
    padding_free: bool = True
    # Decoder. None = same as the encoder field.
    dec_hidden_layers: int = 12
    dec_hidden_size: int | None = None
    dec_num_attention_heads: int | None = None
    dec_intermediate_size: int | None = None
    dec_hidden_act: str | None = None
    dec_layer_norm_eps: float | None = None
    dec_dropout: float | None = None
    dec_max_positions: int = 5000  # sinusoidal table length (presumm-en)
    # Output.
    use_pointer_generator: bool = False
    # PreSumm's CopyGenerator soft-maxes the (already normalised) copy distribution a second time over the whole
    # vocabulary, which flattens it towards uniform. Off by default; on only to reproduce the original numbers.
    copy_double_softmax: bool = False
    # Ids at or above this are never produced (the released Chinese table is padded from 21128 to 21504 rows).
    real_vocab_size: int | None = None
    # Special tokens.
    pad_token_id: int = 0
    bos_token_id: int = 101
    eos_token_id: int = 102
    decoder_start_token_id: int | None = None

    # -- resolved decoder sizes ----------------------------------------------------------------------------------
    @property
    def decoder_hidden_size(self) -> int:
        return self.dec_hidden_size or self.hidden_size

    @property
    def decoder_heads(self) -> int:
        return self.dec_num_attention_heads or self.num_attention_heads

    @property
    def decoder_intermediate_size(self) -> int:
        return self.dec_intermediate_size or self.intermediate_size

    @property
    def decoder_act(self) -> str:
        return self.dec_hidden_act or self.hidden_act

    @property
    def decoder_layer_norm_eps(self) -> float:
        return self.dec_layer_norm_eps if self.dec_layer_norm_eps is not None else self.layer_norm_eps

    @property
    def decoder_dropout(self) -> float:
        return self.dec_dropout if self.dec_dropout is not None else self.hidden_dropout_prob

    @property
    def start_token_id(self) -> int:
        """First decoder token: ``decoder_start_token_id`` or BOS."""
        return self.decoder_start_token_id if self.decoder_start_token_id is not None else self.bos_token_id

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.decoder_hidden_size % self.decoder_heads:
            raise ValueError(
                f"decoder hidden size {self.decoder_hidden_size} must be divisible by its {self.decoder_heads} heads"
            )
        if self.architecture == "sofa-zh":
            for name, enc_name in _ENCODER_FIELD.items():
                value = getattr(self, name)
                # sofa builds its decoder from the encoder fields (the embedding module is shared).
                if value is not None and value != getattr(self, enc_name):
                    raise ValueError(
                        f"sofa-zh decoders share the encoder's sizes: {name}={value} differs from "
                        f"{enc_name}={getattr(self, enc_name)}"
                    )
            if self.use_pointer_generator:
                raise ValueError("use_pointer_generator exists only in the presumm-en code base")
        if self.real_vocab_size is not None and not 0 < self.real_vocab_size <= self.vocab_size:
            raise ValueError(f"real_vocab_size {self.real_vocab_size} must lie in (0, vocab_size={self.vocab_size}]")


_ENCODER_FIELD = {
    "dec_hidden_size": "hidden_size",
    "dec_num_attention_heads": "num_attention_heads",
    "dec_intermediate_size": "intermediate_size",
}

# Released sizes. Sources: sofa/sofa/models/palm/configuration_palm.py (defaults of the Chinese base model) and
# PALM/finetune_cnndm_task_roberta.sh + train.py defaults (English: RoBERTa-base encoder, dec_heads default 8).
_ZH = dict(
    architecture="sofa-zh",
    vocab_size=21504,
    real_vocab_size=21128,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    max_position_embeddings=2048,
    type_vocab_size=3,
    initializer_range=0.00707,
    layer_norm_eps=1e-12,
    pre_ln=True,
    encoder_final_norm_twice=True,
    dec_hidden_layers=12,
    pad_token_id=0,
    bos_token_id=101,  # [CLS]
    eos_token_id=102,  # [SEP]
)
_EN = dict(
    architecture="presumm-en",
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    max_position_embeddings=514,
    type_vocab_size=1,
    initializer_range=0.02,
    layer_norm_eps=1e-5,
    pre_ln=False,
    position_offset=2,
    dec_hidden_layers=12,
    dec_hidden_size=768,
    dec_num_attention_heads=8,
    dec_intermediate_size=2048,
    dec_hidden_act="gelu_tanh",
    dec_layer_norm_eps=1e-6,
    dec_dropout=0.2,
    pad_token_id=1,  # <pad>
    bos_token_id=0,  # <s>
    eos_token_id=2,  # </s>
)
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, dec_hidden_layers=2)
for _name, _values in {
    "palm.ch.base": _ZH,
    "palm.en.base": _EN,
    "palm.ch.tiny": {**_ZH, **_TINY, "vocab_size": 128, "real_vocab_size": None, "max_position_embeddings": 64},
    "palm.en.tiny": {
        **_EN,
        **_TINY,
        "vocab_size": 128,
        "max_position_embeddings": 66,
        "dec_hidden_size": 32,
        "dec_num_attention_heads": 2,
        "dec_intermediate_size": 48,
        "dec_max_positions": 256,
    },
}.items():
    register_preset("palm", _name, _values)
