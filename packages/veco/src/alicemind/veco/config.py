"""VECO configuration (Hugging Face ``XLMRobertaConfig`` field names) and the released sizes as presets.

One config serves both released models: the NLU encoder (``config.json`` of ``xtreme-released-veco/``, an
XLM-R-large shape) and the NLG encoder-decoder (fairseq arch ``veco_large``: the same encoder plus a decoder of
``decoder_layers`` blocks with cross-attention, token embeddings scaled by sqrt(hidden), ``layernorm_embedding``,
all embeddings shared).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from alicemind.core.config import ModelConfig, register_preset


@dataclass
class VecoConfig(ModelConfig):
    """Architecture of VECO. An NLU ``config.json`` is a valid ``XLMRobertaConfig`` (``model_type`` xlm-roberta);
    an NLG one (``is_encoder_decoder``) says ``model_type`` veco."""

    model_type: ClassVar[str] = "xlm-roberta"
    family: ClassVar[str] = "veco"

    vocab_size: int = 250002
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    # RoBERTa layout: positions start at pad_token_id + 1, so 512 tokens need 514 rows.
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    classifier_dropout: float | None = None
    num_labels: int = 2
    id2label: dict[str, str] | None = None
    label2id: dict[str, int] | None = None
    task_specs: list[dict] | None = None
    # Run linear layers and the FFN on packed real tokens only (same outputs, less work on padded batches).
    # None: packed in eager training steps on ragged batches; True: always; False: never.
    padding_free: bool | None = None
    # -- NLG (encoder-decoder) fields ----------------------------------------------------------------------------
    is_encoder_decoder: bool = False
    decoder_layers: int = 6
    scale_embedding: bool = False  # fairseq multiplies token embeddings by sqrt(hidden) (no_scale_embedding False)
    activation_dropout: float = 0.0  # fairseq's relu/activation dropout (arch default 0)
    # The target-language tag: decoder start token and generation EOS in translation (errata 1.1).
    decoder_start_token_id: int | None = None

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise ValueError(
                f"max_position_embeddings {self.max_position_embeddings} leaves no position after the padding "
                f"offset {self.pad_token_id + 1}"
            )
        if self.is_encoder_decoder and self.decoder_layers < 1:
            raise ValueError(f"an encoder-decoder needs decoder_layers >= 1, got {self.decoder_layers}")
        if self.id2label is not None:
            self.id2label = {str(k): str(v) for k, v in self.id2label.items()}
            if len(self.id2label) != self.num_labels:
                # Names of another head (e.g. transformers' default LABEL_0/LABEL_1 beside num_labels=3): dropped,
                # so the saved config.json stays one transformers reads with this head's size.
                self.id2label = self.label2id = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> VecoConfig:
        """As :meth:`ModelConfig.from_dict`; a transformers ``config.json`` without ``num_labels`` takes it from
        ``id2label`` (transformers' own rule)."""
        if isinstance(data, dict) and isinstance(data.get("id2label"), dict) and "num_labels" not in data:
            data = {**data, "num_labels": len(data["id2label"])}
        return super().from_dict(data, **overrides)

    @property
    def position_offset(self) -> int:
        """Row of the first real position (fairseq ``make_positions``: pad_token_id + 1)."""
        return self.pad_token_id + 1

    @property
    def max_length(self) -> int:
        """Tokens a sequence may hold (the position table minus the padding offset)."""
        return self.max_position_embeddings - self.position_offset

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.is_encoder_decoder:
            out["model_type"] = "veco"  # not an XLMRobertaConfig: transformers must not take it for one
        return out


_LARGE = dict(
    vocab_size=250002,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    max_position_embeddings=514,
)
_NLG = dict(
    is_encoder_decoder=True,
    scale_embedding=True,
    attention_probs_dropout_prob=0.0,  # veco_large: attention_dropout 0, relu_dropout 0, dropout 0.1
    activation_dropout=0.0,
)
_TINY = dict(
    vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=130,
)  # fmt: skip
for _name, _values in {
    # Released: xtreme-released-veco/config.json (XLM-R large shape; models-language.md 3.1, 3.4).
    "veco.large": _LARGE,
    # Released: VECO/NLG veco_large (24 encoder layers, 6 decoder layers kept by the fine-tune scripts).
    "veco.large.nlg": {**_LARGE, **_NLG, "decoder_layers": 6},
    # veco_xlarge: the same with all 24 decoder layers.
    "veco.xlarge.nlg": {**_LARGE, **_NLG, "decoder_layers": 24},
    # Test-sized.
    "veco.tiny": _TINY,
    "veco.tiny.nlg": {**_TINY, **_NLG, "decoder_layers": 2},
}.items():
    register_preset("veco", _name, _values)
