"""LatticeBERT models: factorised embeddings, the lattice position bias, core's post-LN stack, and task heads.

State-dict keys are our module names (there is no Hugging Face peer); ``from_pretrained`` also reads the released
TF1 tarball folders (see ``convert.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers import BlockSpec, MaskedLMHead, Pooler, SpanQAHead, TextEmbeddings, TransformerStack
from alicemind.core.modeling import LoadedCheckpoint, PreTrainedModel, init_bert_weights
from alicemind.latticebert.config import LatticeBertConfig
from alicemind.latticebert.crf import CRF
from alicemind.latticebert.position import LatticePositionBias


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class TaskOutput:
    """Loss (when labels are given), logits, and per-objective metrics for logging."""

    loss: torch.Tensor | None
    logits: Any
    metrics: dict[str, torch.Tensor] | None = None


class LatticeBertPreTrainedModel(PreTrainedModel):
    """Shared init and checkpoint reading of every LatticeBERT class."""

    config_class = LatticeBertConfig
    head_kind: str = "model"  # which released head variables this class reads (see convert.TF_HEADS)

    def init_weights(self) -> None:
        """BERT init: normal(0, initializer_range) for weights and tables, zero biases, unit norms."""
        std = self.config.initializer_range

        def reset_vectors(module: nn.Module) -> None:
            if isinstance(module, LatticePositionBias):
                nn.init.normal_(module.reset_theta_1, std=std)
                nn.init.normal_(module.reset_theta_2, std=std)

        # The released TF code never zeroes a padding row.
        init_bert_weights(self, std, zero_padding_rows=False, other=reset_vectors)

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        from alicemind.latticebert.convert import read_latticebert_checkpoint

        return read_latticebert_checkpoint(cls, path, **config_overrides)


class LatticeBertModel(LatticeBertPreTrainedModel):
    """The encoder: embeddings without input positions, the position bias computed once, post-LN stack, pooler."""

    def __init__(self, config: LatticeBertConfig, *, add_pooling_layer: bool = True):
        super().__init__(config)
        c = config
        self.embeddings = TextEmbeddings(
            c.vocab_size,
            c.hidden_size,
            max_positions=0,  # no absolute position embedding on the input
            type_vocab_size=c.type_vocab_size,
            pad_token_id=None,
            embedding_size=c.embedding_size,
            projection_bias=False,
            layer_norm_eps=c.layer_norm_eps,
            dropout=c.hidden_dropout_prob,
        )
        self.position_bias = LatticePositionBias(
            max_positions=c.max_position_embeddings,
            embedding_size=c.embedding_size,
            hidden_size=c.hidden_size,
            num_heads=c.num_attention_heads,
            max_relative=c.max_relative_position,
        )
        spec = BlockSpec(
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            activation=c.hidden_act,
            norm_first=False,
            layer_norm_eps=c.layer_norm_eps,
            dropout=c.hidden_dropout_prob,
            attention_dropout=c.attention_probs_dropout_prob,
        )
        self.encoder = TransformerStack(spec, c.num_hidden_layers)
        self.pooler = Pooler(c.hidden_size) if add_pooling_layer else None
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        lattice_starts: torch.Tensor | None = None,
        lattice_ends: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encode ``[B, L]`` lattice units; ``lattice_starts``/``lattice_ends`` are each unit's first and last
        character position (from :class:`~alicemind.latticebert.LatticeBertTokenizer`)."""
        if lattice_starts is None or lattice_ends is None:
            raise ValueError("LatticeBERT needs lattice_starts and lattice_ends (the tokenizer returns them)")
        if lattice_starts.shape != input_ids.shape:
            raise ValueError(f"lattice_starts {tuple(lattice_starts.shape)} != input_ids {tuple(input_ids.shape)}")
        x = self.embeddings(input_ids, token_type_ids=token_type_ids)
        bias = self.position_bias(lattice_starts, lattice_ends)
        out = self.encoder(x, padding_mask=attention_mask, attn_bias=bias, output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return EncoderOutput(hidden, pooled, out.hidden_states)


def _encoder_inputs(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("attention_mask", "token_type_ids", "lattice_starts", "lattice_ends")
    return {k: kwargs.get(k) for k in keys}


def _ce_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss = F.cross_entropy(logits.float(), labels, ignore_index=-100)
    valid = labels != -100
    # Correct over valid, counted without selecting rows (no data-dependent shape under torch.compile); 0 when
    # nothing is valid. Counts are exact integers in fp32, so this equals the mean over the valid rows.
    acc = ((logits.argmax(-1) == labels) & valid).sum().float() / valid.sum().clamp(min=1).float()
    return loss, acc


class LatticeBertForPreTraining(LatticeBertPreTrainedModel):
    """Masked segment prediction over characters and words (MLM head tied to the factorised table) plus the
    3-way sentence relation (0 random, 1 next, 2 swapped)."""

    head_kind = "pretraining"
    optional_keys = (r"^cls_predictions\.", r"^cls_seq_relationship\.")

    def __init__(self, config: LatticeBertConfig, num_sentence_classes: int = 3):
        super().__init__(config)
        self.bert = LatticeBertModel(config)
        self.cls_predictions = MaskedLMHead(
            config.hidden_size,
            config.vocab_size,
            embedding_size=config.embedding_size,
            activation=config.hidden_act,
            layer_norm_eps=config.layer_norm_eps,
        )
        self.cls_seq_relationship = nn.Linear(config.hidden_size, num_sentence_classes)
        self.init_weights()
        self.cls_predictions.tie_to(self.bert.embeddings.word_embeddings)

    def forward(self, input_ids, mlm_labels=None, sentence_labels=None, **kwargs: Any) -> TaskOutput:
        """``mlm_labels``: original ids of masked units, -100 elsewhere; ``sentence_labels``: 0/1/2."""
        enc = self.bert(input_ids, **_encoder_inputs(kwargs))
        sr_logits = self.cls_seq_relationship(enc.pooler_output)
        if mlm_labels is None:
            return TaskOutput(None, (self.cls_predictions(enc.last_hidden_state), sr_logits))
        chosen = mlm_labels != -100  # project only the predicted units through the vocabulary
        mlm_logits = self.cls_predictions(enc.last_hidden_state[chosen])
        mlm_loss, mlm_acc = _ce_accuracy(mlm_logits, mlm_labels[chosen])
        loss, metrics = mlm_loss, {"mlm_loss": mlm_loss.detach(), "mlm_acc": mlm_acc}
        if sentence_labels is not None:
            sr_loss, sr_acc = _ce_accuracy(sr_logits, sentence_labels)
            loss = loss + sr_loss
            metrics.update(sr_loss=sr_loss.detach(), sr_acc=sr_acc)
        return TaskOutput(loss, (mlm_logits, sr_logits), metrics)


class LatticeBertForSequenceClassification(LatticeBertPreTrainedModel):
    """Pooled [CLS] -> dropout -> ``classifier`` (the original's ``output_weights``/``output_bias``), CE loss."""

    head_kind = "classifier"
    optional_keys = (r"^classifier\.",)

    def __init__(self, config: LatticeBertConfig):
        super().__init__(config)
        self.bert = LatticeBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(self, input_ids, labels=None, **kwargs: Any) -> TaskOutput:
        logits = self.classifier(self.dropout(self.bert(input_ids, **_encoder_inputs(kwargs)).pooler_output))
        if labels is None:
            return TaskOutput(None, logits)
        loss, acc = _ce_accuracy(logits, labels)
        return TaskOutput(loss, logits, {"accuracy": acc})


class LatticeBertForTokenClassification(LatticeBertPreTrainedModel):
    """Tagging with a CRF: the units at ``label_positions`` (each word's first character) -> dropout -> linear ->
    CRF (``transition_matrix``), as the original's sequence-labelling script."""

    head_kind = "crf"
    optional_keys = (r"^classifier\.", r"^crf\.")

    def __init__(self, config: LatticeBertConfig):
        super().__init__(config)
        self.bert = LatticeBertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.crf = CRF(config.num_labels)
        self.init_weights()
        nn.init.uniform_(self.crf.transitions, -0.1, 0.1)

    def emissions(self, input_ids, label_positions, **kwargs: Any) -> torch.Tensor:
        hidden = self.bert(input_ids, **_encoder_inputs(kwargs)).last_hidden_state
        index = label_positions[..., None].expand(-1, -1, hidden.shape[-1])
        return self.classifier(self.dropout(hidden.gather(1, index)))

    def forward(self, input_ids, label_positions, label_mask, labels=None, **kwargs: Any) -> TaskOutput:
        """``label_positions`` ``[B, T]``: unit index of each tagged word; ``label_mask`` 1 for real words."""
        emissions = self.emissions(input_ids, label_positions, **kwargs)
        if labels is None:
            return TaskOutput(None, emissions)
        loss = self.crf(emissions, labels, label_mask)
        return TaskOutput(loss, emissions, {"crf_nll": loss.detach()})

    @torch.no_grad()
    def decode(self, input_ids, label_positions, label_mask, **kwargs: Any) -> list[list[int]]:
        """The Viterbi tag ids of every row's words."""
        return self.crf.decode(self.emissions(input_ids, label_positions, **kwargs), label_mask)


class LatticeBertForQuestionAnswering(LatticeBertPreTrainedModel):
    """Span extraction: start/end logits over the units (``qa.qa_outputs``); no released head exists."""

    head_kind = "qa"
    optional_keys = (r"^qa\.",)

    def __init__(self, config: LatticeBertConfig):
        super().__init__(config)
        self.bert = LatticeBertModel(config, add_pooling_layer=False)
        self.qa = SpanQAHead(config.hidden_size)
        self.init_weights()

    def forward(self, input_ids, start_positions=None, end_positions=None, **kwargs: Any) -> TaskOutput:
        """``start_positions``/``end_positions``: unit indices of the answer span (labels)."""
        start, end = self.qa(self.bert(input_ids, **_encoder_inputs(kwargs)).last_hidden_state)
        if start_positions is None or end_positions is None:
            return TaskOutput(None, (start, end))
        loss = (F.cross_entropy(start.float(), start_positions) + F.cross_entropy(end.float(), end_positions)) / 2
        return TaskOutput(loss, (start, end))
