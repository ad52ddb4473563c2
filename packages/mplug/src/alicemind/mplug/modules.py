"""mPLUG's parts, each assembled from core layers: BERT text encoder, skip-connected fusion, BERT decoder with the
tied LM head, the decoding adapter for core's generation engine, and the momentum copies."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from alicemind.core.layers import BlockSpec, LayerCache, MaskedLMHead, TextEmbeddings, TransformerStack
from alicemind.core.layers.attention import build_attention_mask
from alicemind.mplug.config import MPlugConfig


def block_spec(config: MPlugConfig, *, cross: bool) -> BlockSpec:
    """BERT's post-LN block at the text width; cross-attention reads the (projected) image at the same width."""
    return BlockSpec(
        hidden_size=config.hidden_size,
        num_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        activation=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
        dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
        cross_attention=cross,
    )


class BertStack(nn.Module):
    """``embeddings`` + ``encoder`` (core stack): the release's ``BertModel`` without pooler."""

    def __init__(self, config: MPlugConfig, num_layers: int, *, cross: bool = False):
        super().__init__()
        self.embeddings = TextEmbeddings(
            config.vocab_size,
            config.hidden_size,
            max_positions=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            pad_token_id=config.pad_token_id,
            layer_norm_eps=config.layer_norm_eps,
            dropout=config.hidden_dropout_prob,
        )
        # The cross-attending stack is the causal decoder, which core's stack never packs: only the text encoder does.
        packed = False if cross else config.padding_free
        self.encoder = TransformerStack(block_spec(config, cross=cross), num_layers, padding_free=packed)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embeddings(input_ids), padding_mask=attention_mask).last_hidden_state


class FusionEncoder(nn.Module):
    """The skip-connected network: co-attention layers (text self-attn, text->image cross-attn, FFN) and, at
    every ``stride_layer``-th layer after the first, a connected layer (one self-attention over ``[image; text]``
    with the same weights, FFN over both), whose image half is added to the image states as released."""

    def __init__(self, config: MPlugConfig):
        super().__init__()
        self.stride = config.stride_layer
        self.layers = nn.ModuleList(
            TransformerStack(block_spec(config, cross=True), 1).layers[0] for _ in range(config.fusion_layers)
        )

    def is_connected(self, k: int) -> bool:
        return k > 0 and k % self.stride == 0

    def forward(
        self, text: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor, image_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(image_states, text_states)``."""
        n_img = image.shape[1]
        self_mask = build_attention_mask(text_mask, text.shape[1], dtype=text.dtype)
        cross_mask = build_attention_mask(image_mask, text.shape[1], dtype=text.dtype)
        joint_mask = torch.cat([image_mask, text_mask], dim=1)
        joint = build_attention_mask(joint_mask, n_img + text.shape[1], dtype=text.dtype)
        for k, layer in enumerate(self.layers):
            if self.is_connected(k):
                out = layer(torch.cat([image, text], dim=1), mask=joint, skip_cross_attention=True)
                # modeling_mplug.py adds the layer's image output (already residual) to the image states again.
                image, text = image + out[:, :n_img], out[:, n_img:]
            else:
                text = layer(text, mask=self_mask, encoder_states=image, encoder_mask=cross_mask)
        return image, text


class TextDecoder(nn.Module):
    """``bert`` (causal, cross-attending) and ``cls`` (MLM head whose decoder weight is the word embeddings)."""

    def __init__(self, config: MPlugConfig):
        super().__init__()
        self.bert = BertStack(config, config.text_decode_layers, cross=True)
        self.cls = MaskedLMHead(
            config.hidden_size, config.vocab_size, activation=config.hidden_act, layer_norm_eps=config.layer_norm_eps
        )
        self.cls.tie_to(self.bert.embeddings.word_embeddings)
        self.max_decoder_positions = config.max_position_embeddings

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, states: torch.Tensor, states_mask: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, V]``."""
        x = self.bert.embeddings(input_ids)
        out = self.bert.encoder(
            x, padding_mask=attention_mask, causal=True, encoder_states=states, encoder_padding_mask=states_mask
        )
        return self.cls(out.last_hidden_state)


def sequence_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int = 1
) -> torch.Tensor:
    """Summed next-token CE per row ``[B]`` over the real tokens after the first ``prompt_length`` ones."""
    targets = input_ids[:, 1:].clone()
    keep = attention_mask[:, 1:].bool()
    keep[:, : prompt_length - 1] = False
    targets[~keep] = -100
    ce = nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets, reduction="none")
    return ce.sum(1)


@dataclass
class DecoderCache:
    layers: list[LayerCache]
    encoder_mask: torch.Tensor
    length: int = 0
    position: torch.Tensor | None = None  # static caches: [1] next decoder position, shared by every layer


class DecoderSteps(nn.Module):
    """The text decoder's incremental steps over a KV cache: the part of generation that
    ``optimize_for_inference`` compiles. The conditioning states reach it only through the cache, so one
    compiled step serves every batch. It holds the decoder without copying it (no weights of its own)."""

    def __init__(self, decoder: TextDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, input_ids, attention_mask, states, states_mask) -> torch.Tensor:
        """Teacher-forced logits, as :class:`TextDecoder`."""
        return self.decoder(input_ids, attention_mask, states, states_mask)

    def decode_step(self, decoder_input_ids: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Logits ``[B, T_new, V]`` of the new tokens; their keys/values go into ``cache``."""
        bert, new = self.decoder.bert, decoder_input_ids.shape[1]
        if cache.position is not None:
            positions = cache.position + torch.arange(new, device=decoder_input_ids.device)
            x = bert.embeddings(decoder_input_ids, position_ids=positions[None])
        else:
            x = bert.embeddings(decoder_input_ids, past_length=cache.length)
        out = bert.encoder(x, causal=True, encoder_padding_mask=cache.encoder_mask, caches=cache.layers)
        if cache.position is not None:
            cache.position.add_(new)  # after every layer wrote at the old position
        else:  # a Python count: under compile a static cache must not change one each step
            cache.length += new
        return self.decoder.cls(out.last_hidden_state)


class ConditionedDecoder:
    """Presents decoder steps and fixed conditioning states (image, or fused image+text) to core's generate.

    core's engine encodes ``input_ids``; here the conditioning is already computed, so the engine is handed a
    ``[B, 1]`` placeholder source and :meth:`encode` returns the states (the engine never looks at them).
    ``steps`` is a :class:`DecoderSteps`, or its compiled view; a compiled one decodes over a static cache.
    """

    def __init__(self, steps: DecoderSteps, states: torch.Tensor, states_mask: torch.Tensor):
        self.steps, self.states, self.states_mask = steps, states, states_mask
        self.max_decoder_positions = steps.decoder.max_decoder_positions
        self.prefers_static_cache = bool(getattr(steps, "prefers_static_cache", False))

    def placeholder_source(self) -> torch.Tensor:
        return torch.zeros(self.states.shape[0], 1, dtype=torch.long, device=self.states.device)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.states

    def init_decoder_cache(self, encoder_hidden, encoder_mask, max_length: int, *, static: bool = False):
        """Empty self-attention caches; ``static=True``: fixed buffers written at a tensor position."""
        position = torch.zeros(1, dtype=torch.long, device=encoder_hidden.device) if static else None
        encoder = self.steps.decoder.bert.encoder
        layers = encoder.init_caches(encoder_hidden.shape[0], max_length, encoder_hidden, position=position)
        return DecoderCache(layers, self.states_mask, position=position)

    def decode_step(self, decoder_input_ids: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        return self.steps.decode_step(decoder_input_ids, cache)

    def reorder_cache(self, cache: DecoderCache, index: torch.Tensor) -> DecoderCache:
        for layer in cache.layers:
            layer.index_select(index)
        cache.encoder_mask = cache.encoder_mask.index_select(0, index)
        return cache


def add_momentum_copies(owner: nn.Module, names: list[str]) -> None:
    """ALBEF's momentum ("distill") copies: a frozen ``<name>_m`` beside each listed module of ``owner``."""
    for name in names:
        twin = copy.deepcopy(getattr(owner, name))
        for p in twin.parameters():
            p.requires_grad_(False)
        owner.add_module(f"{name}_m", twin)


@torch.no_grad()
def momentum_update(owner: nn.Module, names: list[str], momentum: float) -> None:
    """``m = momentum * m + (1 - momentum) * online`` for each ``<name>_m`` (momentum 0 copies the online one)."""
    for name in names:
        online, twin = getattr(owner, name).parameters(), getattr(owner, f"{name}_m").parameters()
        for p, q in zip(online, twin, strict=True):
            q.mul_(momentum).add_(p.detach(), alpha=1 - momentum)
