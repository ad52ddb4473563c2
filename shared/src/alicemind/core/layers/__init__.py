"""Building blocks every family assembles: embeddings, attention, blocks, stacks and heads."""

from alicemind.core.layers.activations import FeedForward, get_activation
from alicemind.core.layers.attention import (
    KVCache,
    MultiHeadAttention,
    StaticKVCache,
    build_attention_mask,
    causal_mask,
    grouped_cross_attention,
)
from alicemind.core.layers.block import BlockSpec, LayerCache, TransformerBlock, group_rows_by_source
from alicemind.core.layers.embeddings import (
    LayoutEmbeddings,
    PatchEmbedding,
    SequenceTooLongError,
    SinusoidalPositions,
    TextEmbeddings,
)
from alicemind.core.layers.heads import ClassificationHead, MaskedLMHead, Pooler, SpanQAHead
from alicemind.core.layers.padding import PackedBatch
from alicemind.core.layers.stack import StackOutput, TransformerStack
from alicemind.core.layers.vision import VisionConfig, VisionTransformer

__all__ = [
    "BlockSpec",
    "ClassificationHead",
    "FeedForward",
    "KVCache",
    "StaticKVCache",
    "LayerCache",
    "LayoutEmbeddings",
    "MaskedLMHead",
    "MultiHeadAttention",
    "PackedBatch",
    "PatchEmbedding",
    "Pooler",
    "SequenceTooLongError",
    "SinusoidalPositions",
    "SpanQAHead",
    "StackOutput",
    "TextEmbeddings",
    "TransformerBlock",
    "TransformerStack",
    "VisionConfig",
    "VisionTransformer",
    "build_attention_mask",
    "causal_mask",
    "get_activation",
    "group_rows_by_source",
    "grouped_cross_attention",
]
