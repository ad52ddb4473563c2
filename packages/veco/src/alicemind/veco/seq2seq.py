"""VECO NLG: the fairseq ``veco_large`` encoder-decoder assembled from core layers, with core.generation's protocol.

Post-LN blocks; token embeddings scaled by sqrt(hidden); learned positions offset by pad + 1 (2); a LayerNorm on
the embeddings of both sides; one embedding table shared by the encoder, the decoder and the output projection.
That is the computation of ``transformers.BartForConditionalGeneration`` with ``scale_embedding=True``
(``convert.to_bart_state_dict`` maps the weights). Module names: ``encoder_embeddings`` / ``encoder.layers.{i}``,
``decoder_embeddings`` / ``decoder.layers.{j}`` (with ``cross_attn``); the decoder's word table is the encoder's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from alicemind.core.layers import LayerCache, TextEmbeddings, TransformerStack
from alicemind.core.modeling import LoadedCheckpoint
from alicemind.veco.config import VecoConfig
from alicemind.veco.model import VecoPreTrainedModel, embed_tokens, encoder_spec


@dataclass
class Seq2SeqOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor
    encoder_hidden_state: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] | None = None


@dataclass
class VecoDecoderCache:
    """Per-layer self-attention KV caches (cross KV computed once) and the source mask of each row."""

    layers: list[LayerCache]
    encoder_mask: torch.Tensor

    @property
    def length(self) -> int:
        return self.layers[0].self_kv.length


def _embeddings(c: VecoConfig) -> TextEmbeddings:
    return TextEmbeddings(
        c.vocab_size,
        c.hidden_size,
        max_positions=c.max_position_embeddings,
        type_vocab_size=0,
        pad_token_id=c.pad_token_id,
        position_offset=c.position_offset,
        layer_norm_eps=c.layer_norm_eps,
        dropout=c.hidden_dropout_prob,
        scale=math.sqrt(c.hidden_size) if c.scale_embedding else 1.0,
    )


class VecoForConditionalGeneration(VecoPreTrainedModel):
    """Encoder + decoder with the tied output projection: training loss (label-smoothed CE) and the
    :class:`~alicemind.core.generation.EncoderDecoderLM` protocol for ``alicemind.core.generation.generate``."""

    def __init__(self, config: VecoConfig):
        if not config.is_encoder_decoder:
            config = VecoConfig.from_dict({**config.to_dict(), "is_encoder_decoder": True})
        super().__init__(config)
        c = config
        self.encoder_embeddings = _embeddings(c)
        self.encoder = TransformerStack(encoder_spec(c), c.num_hidden_layers)
        self.decoder_embeddings = _embeddings(c)
        self.decoder = TransformerStack(encoder_spec(c, cross_attention=True), c.decoder_layers)
        self.init_weights()
        # share_all_embeddings: one table for encoder input, decoder input and output projection.
        self.decoder_embeddings.word_embeddings = self.encoder_embeddings.word_embeddings

    # Our own key names in model.safetensors (there is no drop-in peer class for the whole model).
    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    @classmethod
    def import_state_dict(cls, state_dict, config):
        return state_dict

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        """Our folder, or the released fairseq folder (``model.pt`` + ``dict.txt``); options
        ``keep_decoder_layers``, ``resized_dict_map``, ``dictionary`` apply to the fairseq layout."""
        from alicemind.veco.convert import read_nlg_checkpoint

        return read_nlg_checkpoint(path, **config_overrides)

    @property
    def word_embeddings(self) -> torch.nn.Embedding:
        return self.encoder_embeddings.word_embeddings

    # -- computation ---------------------------------------------------------------------------------------------
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states ``[B, S, H]`` (positions count real tokens, so left or right padding give the same)."""
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        x = embed_tokens(self.encoder_embeddings, input_ids, self.config.pad_token_id)
        return self.encoder(x, padding_mask=attention_mask).last_hidden_state

    def decode(self, decoder_input_ids, encoder_hidden, encoder_mask, decoder_attention_mask=None) -> torch.Tensor:
        """Teacher-forced decoder states ``[B, T, H]`` (causal; right-padded targets)."""
        positions = torch.arange(decoder_input_ids.shape[1], device=decoder_input_ids.device)[None]
        x = embed_tokens(self.decoder_embeddings, decoder_input_ids, self.config.pad_token_id, positions)
        out = self.decoder(
            x,
            padding_mask=decoder_attention_mask,
            causal=True,
            encoder_states=encoder_hidden,
            encoder_padding_mask=encoder_mask,
        )
        return out.last_hidden_state

    def logits(self, decoder_output: torch.Tensor) -> torch.Tensor:
        return F.linear(decoder_output, self.word_embeddings.weight)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> Seq2SeqOutput:
        """Teacher-forced logits ``[B, T, V]`` and, with ``labels``, the mean label-smoothed token cross-entropy
        (positions holding -100 or the pad id are ignored). Translation batches give ``decoder_input_ids``
        (``[tgt] tok </s>``) and ``labels`` (``tok </s> [tgt]``) explicitly (see :mod:`alicemind.veco.translation`)."""
        if decoder_input_ids is None:
            raise ValueError("pass decoder_input_ids (the target with its language tag moved to the front)")
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        hidden = self.encode(input_ids, attention_mask)
        logits = self.logits(self.decode(decoder_input_ids, hidden, attention_mask))
        loss = None
        if labels is not None:
            labels = labels.masked_fill(labels == self.config.pad_token_id, -100)
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, label_smoothing=label_smoothing
            )
        metrics = {"loss": loss.detach()} if loss is not None else None
        return Seq2SeqOutput(loss, logits, hidden, metrics)

    # -- EncoderDecoderLM protocol -------------------------------------------------------------------------------
    def init_decoder_cache(self, encoder_hidden, encoder_mask, max_length: int) -> VecoDecoderCache:
        if encoder_mask is None:
            encoder_mask = torch.ones(encoder_hidden.shape[:2], dtype=torch.bool, device=encoder_hidden.device)
        layers = self.decoder.init_caches(encoder_hidden.shape[0], max_length, encoder_hidden)
        return VecoDecoderCache(layers, encoder_mask.bool())

    def decode_step(self, decoder_input_ids: torch.Tensor, cache: VecoDecoderCache) -> torch.Tensor:
        """Logits of the new tokens; the pad id can never be generated (fairseq's SequenceGenerator rule)."""
        past = cache.length
        positions = torch.arange(past, past + decoder_input_ids.shape[1], device=decoder_input_ids.device)[None]
        x = embed_tokens(self.decoder_embeddings, decoder_input_ids, self.config.pad_token_id, positions)
        out = self.decoder(x, causal=True, encoder_padding_mask=cache.encoder_mask, caches=cache.layers)
        logits = self.logits(out.last_hidden_state)
        logits[..., self.config.pad_token_id] = float("-inf")
        return logits

    def reorder_cache(self, cache: VecoDecoderCache, index: torch.Tensor) -> VecoDecoderCache:
        for layer in cache.layers:
            layer.index_select(index)
        cache.encoder_mask = cache.encoder_mask.index_select(0, index)
        return cache

    @property
    def max_decoder_positions(self) -> int:
        return self.config.max_length

    def generation_defaults(self, target_lang_id: int | None = None) -> dict[str, Any]:
        """fairseq's translation settings: the target tag starts the decoder and ends generation (errata 1.1);
        beam 5, length penalty 1 in fairseq's ``n ** alpha`` form."""
        tag = self.config.decoder_start_token_id if target_lang_id is None else target_lang_id
        start = tag if tag is not None else self.config.eos_token_id
        return dict(
            decoder_start_token_id=start,
            eos_token_id=start if tag is not None else self.config.eos_token_id,
            pad_token_id=self.config.pad_token_id,
            num_beams=5,
            length_penalty=1.0,
            length_penalty_style="plain",
        )
