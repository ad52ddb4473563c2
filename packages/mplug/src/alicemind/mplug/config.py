"""mPLUG configuration (the fields of the released ``config_bert*.json`` plus the task yaml's model fields) and the
released sizes as presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alicemind.core.config import ModelConfig, register_preset
from alicemind.core.layers import VisionConfig


@dataclass
class MPlugConfig(ModelConfig):
    """Architecture of mPLUG: a CLIP ViT, a BERT text encoder, the skip-connected fusion and a BERT decoder.

    ``fusion_layers`` of the ``num_hidden_layers`` fusion layers the release allocates run (the last ones);
    fusion layer ``k`` is a connected-attention layer when ``k > 0`` and ``k % stride_layer == 0`` (base: 3).
    """

    model_type: ClassVar[str] = "mplug"
    family: ClassVar[str] = "mplug"

    vision_preset: str = "ViT-B/16"
    image_size: int = 384
    vision_overrides: dict | None = None  # VisionConfig fields over the preset (tiny test towers)
    vision_attention_dropout: float = 0.1  # mPLUG's CLIP copy adds attention dropout 0.1 (errata §7)
    vocab_size: int = 30522
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    pad_token_id: int = 0
    initializer_range: float = 0.02
    text_encoder_layers: int = 6
    num_hidden_layers: int = 12  # fusion layers allocated (the release keeps 0..5 as dead weights)
    fusion_layers: int = 6
    text_decode_layers: int = 12
    stride_layer: int = 3
    embed_dim: int = 256
    queue_size: int = 65536
    momentum: float = 0.995
    temp: float = 0.07
    alpha: float = 0.4
    distill: bool = True
    bos_token_id: int = 101  # [CLS]
    eos_token_id: int = 102  # [SEP]
    mask_token_id: int = 103
    # The text encoder runs its linear layers and FFN on packed real tokens only (same outputs, less work on
    # padded batches); the causal decoder and the fusion layers always run padded.
    # None: packed in eager training steps on ragged batches; True: always; False: never.
    padding_free: bool | None = None

    def vision_config(self) -> VisionConfig:
        """The CLIP tower at this model's image size (without CLIP's projection: mPLUG never uses it)."""
        fields = dict(self.vision_overrides or {})
        fields.setdefault("image_size", self.image_size)
        fields.setdefault("attention_dropout", self.vision_attention_dropout)
        return VisionConfig.preset(self.vision_preset, **fields)

    @property
    def vision_width(self) -> int:
        return self.vision_config().width

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if not 0 < self.fusion_layers <= self.num_hidden_layers:
            raise ValueError(f"fusion_layers {self.fusion_layers} must be in 1..num_hidden_layers")
        if self.stride_layer < 1:
            raise ValueError(f"stride_layer must be >= 1, got {self.stride_layer}")
        self.vision_config()  # an unknown preset or bad override fails here, not at model build


# Released (README table; configs/config_bert_stride3.json for base, config_bert.json for large).
for _name, _values in {
    "mplug.en.base": dict(vision_preset="ViT-B/16", image_size=384, stride_layer=3),
    "mplug.en.large": dict(vision_preset="ViT-L/14", image_size=336, stride_layer=6),
    "mplug.en.large.v2": dict(vision_preset="ViT-L/14", image_size=336, stride_layer=6),
    # Test-sized: one connected layer at fusion k=1 (stride 1 would make every k>0 connected).
    "mplug.test": dict(
        vision_preset="ViT-B/16",
        image_size=32,
        vision_overrides=dict(patch_size=8, width=48, layers=2, heads=4, output_dim=0),
        vision_attention_dropout=0.0,
        vocab_size=120,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        text_encoder_layers=2,
        num_hidden_layers=3,
        fusion_layers=2,
        text_decode_layers=2,
        stride_layer=1,
        embed_dim=16,
        queue_size=32,
        bos_token_id=1,
        eos_token_id=2,
        mask_token_id=3,
    ),
}.items():
    register_preset("mplug", _name, _values)
