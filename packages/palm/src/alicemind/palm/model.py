"""PALM encoder-decoder models assembled from core layers, for both released code bases (see ``config.py``).

Module (and ``model.safetensors`` key) names: ``embeddings`` (encoder input; for sofa-zh also the decoder's),
``encoder.layers.{i}`` / ``encoder.final_norm``, ``decoder_embeddings`` (presumm-en only), ``decoder.layers.{j}`` /
``decoder.final_norm``, ``lm_bias`` (presumm-en generator bias), ``copy_gate`` (pointer-generator) and, in
:class:`~alicemind.palm.pretraining.PalmForPreTraining`, ``mlm_head``. Output logits are tied to the decoder's
word embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers import (
    BlockSpec,
    LayerCache,
    SinusoidalPositions,
    TextEmbeddings,
    TransformerStack,
    group_rows_by_source,
)
from alicemind.core.modeling import LoadedCheckpoint, PreTrainedModel, init_bert_weights
from alicemind.palm.config import PalmConfig
from alicemind.palm.pointer import CopyGate, QueryCapture, copy_attention


@dataclass
class Seq2SeqOutput:
    """``logits`` are log-probabilities when the pointer-generator is on (already normalised)."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    encoder_hidden_state: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] | None = None


@dataclass
class PalmDecoderCache:
    """Incremental decoding state: per-layer KV caches and the per-row source information they attend to."""

    layers: list[LayerCache]
    encoder_mask: torch.Tensor  # [N, S] bool, one row per cross-attention row
    cross_source: torch.Tensor  # [N] the original source of each cross-attention row
    row_source: torch.Tensor  # [R] the cross-attention row each decoder row reads; R = N, or G * N in groups
    encoder_hidden: torch.Tensor | None = None  # pointer-generator only, per cross-attention row
    source_ids: torch.Tensor | None = None  # pointer-generator only, per cross-attention row
    position: torch.Tensor | None = None  # static caches: [1] next decoder position, shared by every layer

    @property
    def length(self) -> int:
        return self.layers[0].self_kv.length

    @property
    def static(self) -> bool:
        """Fixed-size self-attention buffers written at ``position`` (one compiled graph for every step)."""
        return self.position is not None


class PalmModel(PreTrainedModel):
    """Encoder + decoder stacks; ``forward`` returns the decoder's final hidden states."""

    config_class = PalmConfig

    def __init__(self, config: PalmConfig):
        super().__init__(config)
        c = config
        zh = c.architecture == "sofa-zh"
        self.embeddings = TextEmbeddings(
            c.vocab_size,
            c.hidden_size,
            max_positions=c.max_position_embeddings,
            type_vocab_size=c.type_vocab_size,
            # sofa's table has no padding_idx (the pad row is trained); RoBERTa's has one.
            pad_token_id=None if zh else c.pad_token_id,
            position_offset=c.position_offset,
            layer_norm_eps=c.layer_norm_eps,
            dropout=c.hidden_dropout_prob,
        )
        encoder_spec = BlockSpec(
            hidden_size=c.hidden_size,
            num_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            activation=c.hidden_act,
            norm_first=c.pre_ln,
            layer_norm_eps=c.layer_norm_eps,
            dropout=c.hidden_dropout_prob,
            attention_dropout=c.attention_probs_dropout_prob,
            fused_qkv=zh and not c.attn_separate,
        )
        self.encoder = TransformerStack(encoder_spec, c.num_hidden_layers, padding_free=c.padding_free)
        dec_h = c.decoder_hidden_size
        if zh:
            self.decoder_embeddings = None  # sofa feeds the decoder through the encoder's embedding module
            self.decoder_positions = None
        else:
            self.decoder_embeddings = TextEmbeddings(
                c.vocab_size,
                dec_h,
                max_positions=0,
                type_vocab_size=0,
                pad_token_id=c.pad_token_id,
                layer_norm=False,
                dropout=c.decoder_dropout,
                scale=math.sqrt(dec_h),
            )
            self.decoder_positions = SinusoidalPositions(dec_h, c.dec_max_positions)
        decoder_spec = BlockSpec(
            hidden_size=dec_h,
            num_heads=c.decoder_heads,
            intermediate_size=c.decoder_intermediate_size,
            activation=c.decoder_act,
            norm_first=True,
            layer_norm_eps=c.decoder_layer_norm_eps,
            dropout=c.decoder_dropout,
            attention_dropout=c.attention_probs_dropout_prob if zh else c.decoder_dropout,
            fused_qkv=zh,
            cross_attention=True,
            cross_kv_size=c.hidden_size,
        )
        self.decoder = TransformerStack(decoder_spec, c.dec_hidden_layers, final_norm=True)
        self._init_if_last(PalmModel)

    def _init_if_last(self, cls: type) -> None:
        # Each class adds its modules, then the most derived one initialises every weight once.
        if type(self) is cls:
            self.init_weights()

    # -- weights ----------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """normal(0, initializer_range) for linear/embedding weights, zero biases, unit norms (sofa and PreSumm)."""
        init_bert_weights(self, self.config.initializer_range)

    @property
    def output_embeddings(self) -> nn.Embedding:
        """The table the output projection is tied to (the decoder's input word embeddings)."""
        source = self.decoder_embeddings if self.decoder_embeddings is not None else self.embeddings
        return source.word_embeddings

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        """Our folder, sofa's ``palm_model.pt`` folder, or PALM EN's pickled ``{'model','opt','optims'}`` file."""
        from alicemind.palm.convert import read_any_checkpoint

        return read_any_checkpoint(path, **config_overrides)

    # -- encoder ----------------------------------------------------------------------------------------------
    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids=None
    ) -> torch.Tensor:
        """Encoder states ``[B, S, H]`` of a padded source batch (``attention_mask`` 1 = real token)."""
        x = self.embeddings(input_ids, token_type_ids=token_type_ids)
        hidden = self.encoder(x, padding_mask=attention_mask).last_hidden_state
        if self.config.encoder_final_norm_twice and self.encoder.final_norm is not None:
            hidden = self.encoder.final_norm(hidden)
        return hidden

    # -- decoder ----------------------------------------------------------------------------------------------
    def embed_decoder(
        self, decoder_input_ids: torch.Tensor, past_length: int = 0, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decoder input embeddings at positions ``past_length``.. or, when given, ``position_ids`` ``[1, T]``."""
        if self.decoder_embeddings is None:
            return self.embeddings(decoder_input_ids, past_length=past_length, position_ids=position_ids)
        if position_ids is not None:
            positions = self.decoder_positions.table[position_ids]
        else:
            positions = self.decoder_positions(decoder_input_ids.shape[1], past_length)
        return self.decoder_embeddings(decoder_input_ids, extra=positions)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_hidden: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        decoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced decoder states ``[B, T, Hd]`` (causal; no cache)."""
        x = self.embed_decoder(decoder_input_ids)
        out = self.decoder(
            x,
            padding_mask=decoder_attention_mask,
            causal=True,
            encoder_states=encoder_hidden,
            encoder_padding_mask=encoder_mask,
        )
        return out.last_hidden_state

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, token_type_ids=None) -> torch.Tensor:
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        return self.decode(decoder_input_ids, hidden, attention_mask)


class PalmForConditionalGeneration(PalmModel):
    """PALM with its tied output projection (and optional pointer-generator): training loss and the
    :class:`~alicemind.core.generation.EncoderDecoderLM` protocol for ``alicemind.core.generation.generate``."""

    def __init__(self, config: PalmConfig):
        super().__init__(config)
        # PreSumm's generator Linear has a bias; sofa's logits are a bare F.linear with the embeddings.
        self.lm_bias = nn.Parameter(torch.zeros(config.vocab_size)) if config.architecture == "presumm-en" else None
        self.copy_gate = None
        self._copy_query = None
        self._pending_source: tuple[torch.Tensor, torch.Tensor] | None = None
        self.int8_output_projection: nn.Module | None = None  # set by core.ops.int8.quantize_linear_weights
        if config.use_pointer_generator:
            self.copy_gate = CopyGate(config.hidden_size, config.decoder_hidden_size)
            self._copy_query = QueryCapture(self.decoder.layers[-1].cross_attn.q_proj)
        self._init_if_last(PalmForConditionalGeneration)

    def tied_output_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias of the logits' projection (the tied embedding table)."""
        return self.output_embeddings.weight, self.lm_bias

    def logits(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of decoder states, with ids beyond ``real_vocab_size`` made impossible."""
        if self.int8_output_projection is not None:
            logits = self.int8_output_projection(decoder_output)
        else:
            logits = F.linear(decoder_output, self.output_embeddings.weight, self.lm_bias)
        real = self.config.real_vocab_size
        if real is not None and real < logits.shape[-1]:
            logits[..., real:] = float("-inf")
        return logits

    def _project(self, decoder_output, encoder_hidden, encoder_mask, source_ids, keys) -> torch.Tensor:
        logits = self.logits(decoder_output)
        if self.copy_gate is None:
            return logits
        attention = copy_attention(self._copy_query.pop(), keys, encoder_mask)
        return self.copy_gate(
            logits,
            decoder_output,
            attention,
            encoder_hidden,
            source_ids,
            double_softmax=self.config.copy_double_softmax,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        token_type_ids: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> Seq2SeqOutput:
        """Teacher-forced logits ``[B, T, V]`` and, with ``labels``, the mean token cross-entropy.

        Without ``decoder_input_ids`` they are ``labels`` shifted right behind the start token. Label positions
        holding -100 or the pad id are ignored.
        """
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids, labels, or both")
            decoder_input_ids = self.shift_right(labels)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # PalmModel.encode: the protocol's encode() would stash the ids for init_decoder_cache.
        encoder_hidden = super().encode(input_ids, attention_mask, token_type_ids)
        decoder_output = self.decode(decoder_input_ids, encoder_hidden, attention_mask)
        keys = None
        if self.copy_gate is not None:
            keys = self.decoder.layers[-1].cross_attn.project_kv(encoder_hidden)[0]
        logits = self._project(decoder_output, encoder_hidden, attention_mask, input_ids, keys)
        loss = None
        if labels is not None:
            loss = self.token_loss(logits, labels, label_smoothing)
        return Seq2SeqOutput(loss, logits, encoder_hidden)

    def token_loss(self, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy over label positions that are neither -100 nor the pad id."""
        labels = labels.masked_fill(labels == self.config.pad_token_id, -100)
        return F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, label_smoothing=label_smoothing
        )

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for teacher forcing: the start token, then ``labels[:, :-1]`` (-100 becomes pad)."""
        shifted = labels.new_full(labels.shape, self.config.pad_token_id)
        shifted[:, 0] = self.config.start_token_id
        shifted[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, self.config.pad_token_id)
        return shifted

    # -- EncoderDecoderLM protocol -------------------------------------------------------------------------------
    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        hidden = super().encode(input_ids, attention_mask, token_type_ids)
        if self.copy_gate is not None:
            # The protocol hands init_decoder_cache only the states; the copy distribution also needs the ids.
            self._pending_source = (input_ids, hidden)
        return hidden

    def init_decoder_cache(
        self,
        encoder_hidden: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        max_length: int,
        *,
        source_ids: torch.Tensor | None = None,
        static: bool = False,
    ) -> PalmDecoderCache:
        """Empty self-attention caches for ``max_length`` positions; cross-attention keys/values computed once.

        With the pointer-generator, ``source_ids`` defaults to the ids of the latest :meth:`encode` call that
        produced ``encoder_hidden``. ``static=True``: fixed ``max_length`` buffers written at a tensor position,
        so every decode step has the same shapes (one compiled graph); see ``alicemind.core.generation``.
        """
        batch = encoder_hidden.shape[0]
        device = encoder_hidden.device
        if encoder_mask is None:
            encoder_mask = torch.ones(encoder_hidden.shape[:2], dtype=torch.bool, device=device)
        position = torch.zeros(1, dtype=torch.long, device=device) if static else None
        layers = self.decoder.init_caches(batch, max_length, encoder_hidden, position=position)
        rows = torch.arange(batch, device=device)
        cache = PalmDecoderCache(layers, encoder_mask.bool(), rows, rows, position=position)
        if self.copy_gate is not None:
            if source_ids is None:
                pending = self._pending_source
                if pending is None or pending[1] is not encoder_hidden:
                    raise ValueError(
                        "the pointer-generator needs the source ids: call encode() on this batch right before "
                        "init_decoder_cache(), or pass source_ids="
                    )
                source_ids = pending[0]
            self._pending_source = None
            cache.encoder_hidden, cache.source_ids = encoder_hidden, source_ids
        return cache

    def decode_step(self, decoder_input_ids: torch.Tensor, cache: PalmDecoderCache) -> torch.Tensor:
        """Logits ``[B, T_new, V]`` of the new tokens; their keys/values are appended to ``cache``."""
        if cache.static:
            new = decoder_input_ids.shape[1]
            positions = cache.position + torch.arange(new, device=decoder_input_ids.device)
            x = self.embed_decoder(decoder_input_ids, position_ids=positions[None])
        else:
            x = self.embed_decoder(decoder_input_ids, past_length=cache.length)
        out = self.decoder(x, causal=True, encoder_padding_mask=cache.encoder_mask, caches=cache.layers)
        if cache.static:
            cache.position.add_(new)  # after every layer wrote at the old position
        keys = cache.layers[-1].cross_kv[0] if self.copy_gate is not None else None
        return self._project(out.last_hidden_state, cache.encoder_hidden, cache.encoder_mask, cache.source_ids, keys)

    def reorder_cache(self, cache: PalmDecoderCache, index: torch.Tensor) -> PalmDecoderCache:
        """Keep/repeat/permute decoder rows: the new row ``j`` is the old row ``index[j]``.

        The self-attention cache is copied. The cross-attention keys/values depend on the source only, so they
        are kept once per source while the rows come in equal consecutive groups per source (beams, samples):
        beam reordering then copies nothing there, and attention reads each source's keys once for all its
        beams. They are copied only when a source leaves (or, with the pointer-generator, whose copy
        distribution is computed per row, when rows stop matching them one to one).

        A static cache keeps its row count after the first expansion: the engine's static searches reorder
        rows only within a source's group, whose cross-attention data are identical, so only the
        self-attention buffers move (in place, with no host sync).
        """
        for layer in cache.layers:
            layer.self_kv.index_select(index)
        if cache.static and index.numel() == cache.row_source.numel():
            return cache
        cross_rows = cache.row_source.index_select(0, index)
        sources = cache.cross_source.index_select(0, cross_rows)
        groups = group_rows_by_source(sources) if self.copy_gate is None else None
        if groups is not None:
            sources, group = groups
            keep = cross_rows[::group]
            cache.row_source = torch.arange(len(keep), device=index.device).repeat_interleave(group)
        else:
            keep = cross_rows
            cache.row_source = torch.arange(len(keep), device=index.device)
        if not torch.equal(sources, cache.cross_source):  # rows of one source hold the same data: no copy then
            for layer in cache.layers:
                if layer.cross_kv is not None:
                    layer.cross_kv = tuple(t.index_select(0, keep) for t in layer.cross_kv)
            cache.encoder_mask = cache.encoder_mask.index_select(0, keep)
            if cache.encoder_hidden is not None:
                cache.encoder_hidden = cache.encoder_hidden.index_select(0, keep)
                cache.source_ids = cache.source_ids.index_select(0, keep)
            cache.cross_source = sources
        return cache

    @property
    def max_decoder_positions(self) -> int:
        """Decoder positions the model has: the shared position table (sofa) or the sinusoidal table (PreSumm)."""
        c = self.config
        return c.max_position_embeddings - c.position_offset if self.decoder_positions is None else c.dec_max_positions

    def generation_defaults(self) -> dict[str, Any]:
        """Special-token settings for :class:`~alicemind.core.generation.GenerationConfig`, and the original's beam
        stopping rule (a source stops when its top beam ends: PALM/models/predictor.py)."""
        c = self.config
        return dict(
            decoder_start_token_id=c.start_token_id,
            eos_token_id=c.eos_token_id,
            pad_token_id=c.pad_token_id,
            beam_stopping="top_beam",
        )
