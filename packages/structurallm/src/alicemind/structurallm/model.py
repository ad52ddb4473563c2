"""StructuralLM models: cell-level 2-D embeddings over core's text embeddings, core's post-LN stack, task heads.

State-dict keys are our module names (LayoutLM is the nearest Hugging Face peer, but its shared x/y tables and
height/width tables are a different function; ``convert.to_layoutlm_state_dict`` writes the cases it can hold).
``from_pretrained`` also reads the released TF1 checkpoint (see ``convert.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers import (
    BlockSpec,
    LayoutEmbeddings,
    MaskedLMHead,
    Pooler,
    SpanQAHead,
    TextEmbeddings,
    TransformerStack,
)
from alicemind.core.modeling import LoadedCheckpoint, PreTrainedModel, init_bert_weights
from alicemind.structurallm.config import StructuralLMConfig


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


class StructuralLMEmbeddings(nn.Module):
    """word + 1-D position rows ``offset..offset+L-1`` (every slot, padding too) + x0/y0/x1/y1 tables +
    ``bbox_embeddings[pos_bbox]``, then LayerNorm (eps 1e-5) and dropout. No token-type table is added."""

    def __init__(self, config: StructuralLMConfig):
        super().__init__()
        c = config
        self.text = TextEmbeddings(
            c.vocab_size,
            c.hidden_size,
            max_positions=c.max_position_embeddings if c.use_position_embeddings else 0,
            type_vocab_size=0,
            pad_token_id=c.pad_token_id,
            position_offset=c.position_offset,
            layer_norm_eps=c.layer_norm_eps,
            dropout=c.hidden_dropout_prob,
        )
        self.layout = LayoutEmbeddings(c.hidden_size, max_coordinate=c.max_coordinate, separate_tables=True)
        self.bbox_embeddings = nn.Embedding(c.bbox_vocab_size, c.hidden_size) if c.use_bbox_pos else None
        self.max_tokens = c.max_tokens

    def forward(self, input_ids: torch.Tensor, bbox: torch.Tensor, pos_bbox: torch.Tensor | None) -> torch.Tensor:
        if bbox.shape[:2] != input_ids.shape:
            raise ValueError(
                f"bbox {tuple(bbox.shape)} must be [batch, length, 4] for input_ids {tuple(input_ids.shape)}"
            )
        if pos_bbox is None and self.bbox_embeddings is not None:
            pos_bbox = torch.zeros_like(input_ids)
        extra = self.layout(bbox)  # checks the coordinate range when not tracing
        if self.bbox_embeddings is not None:
            if not torch.compiler.is_compiling():  # reading the ids is a host sync and a graph break in a compile
                limit = self.bbox_embeddings.num_embeddings
                if bool((pos_bbox < 0).any()) or bool((pos_bbox >= limit).any()):
                    raise ValueError(f"pos_bbox ids must lie in [0, {limit - 1}]")
            extra = extra + self.bbox_embeddings(pos_bbox)
        return self.text(input_ids, extra=extra)


class StructuralLMPreTrainedModel(PreTrainedModel):
    """Shared init and checkpoint reading of every StructuralLM class."""

    config_class = StructuralLMConfig
    head_kind: str = "model"  # which released head variables this class reads (see convert.TF_HEADS)

    def init_weights(self) -> None:
        """BERT init: normal(0, initializer_range) for weights and tables, zero biases, unit norms."""
        init_bert_weights(self, self.config.initializer_range, zero_padding_rows=False)  # TF never zeroes a row

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        from alicemind.structurallm.convert import read_structurallm_checkpoint

        return read_structurallm_checkpoint(cls, path, **config_overrides)


class StructuralLMModel(StructuralLMPreTrainedModel):
    """The encoder: 2-D embeddings, post-LN stack, pooler (dense + tanh on ``<s>``)."""

    def __init__(self, config: StructuralLMConfig, *, add_pooling_layer: bool = True):
        super().__init__(config)
        c = config
        self.embeddings = StructuralLMEmbeddings(c)
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
        self.encoder = TransformerStack(spec, c.num_hidden_layers, padding_free=c.padding_free)
        self.pooler = Pooler(c.hidden_size) if add_pooling_layer else None
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        bbox: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pos_bbox: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encode ``[B, L]`` tokens with their cell boxes ``bbox`` ``[B, L, 4]`` (0..1000, from
        :class:`~alicemind.structurallm.DocumentEncoder`); ``pos_bbox`` ``[B, L]`` indexes ``bbox_embeddings``."""
        if bbox is None:
            raise ValueError("StructuralLM needs bbox [batch, length, 4] (DocumentEncoder returns it)")
        x = self.embeddings(input_ids, bbox.long(), pos_bbox)
        mask = None if self.config.attend_padding else attention_mask
        out = self.encoder(x, padding_mask=mask, output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return EncoderOutput(hidden, pooled, out.hidden_states)


def _encoder_inputs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.get(k) for k in ("bbox", "attention_mask", "pos_bbox")}


def _ce_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    valid = labels != -100
    # Correct over valid, counted without selecting rows or asking whether any is valid (each a data-dependent
    # branch under torch.compile); 0 when nothing is valid. Counts are exact in fp32: this is the mean over valid.
    acc = ((logits.argmax(-1) == labels) & valid).sum().float() / valid.sum().clamp(min=1).float()
    return loss, acc


class StructuralLMForPreTraining(StructuralLMPreTrainedModel):
    """Masked visual-language modelling (MLM head tied to the word table; masked tokens keep their cell boxes) plus
    cell position classification: for each token of a chosen cell (whose box is hidden), which of the
    ``num_cpc_areas`` page areas the cell lies in."""

    head_kind = "pretraining"
    optional_keys = (r"^cls_predictions\.", r"^cpc\.")

    def __init__(self, config: StructuralLMConfig):
        super().__init__(config)
        self.bert = StructuralLMModel(config, add_pooling_layer=False)
        self.cls_predictions = MaskedLMHead(
            config.hidden_size, config.vocab_size, activation=config.hidden_act, layer_norm_eps=config.layer_norm_eps
        )
        self.cpc = nn.Linear(config.hidden_size, config.num_cpc_areas)
        self.init_weights()
        self.cls_predictions.tie_to(self.bert.embeddings.text.word_embeddings)

    def forward(self, input_ids, mlm_labels=None, cpc_labels=None, **kwargs: Any) -> TaskOutput:
        """``mlm_labels``: original ids of masked tokens, -100 elsewhere; ``cpc_labels``: area ids of the tokens
        of chosen cells, -100 elsewhere."""
        hidden = self.bert(input_ids, **_encoder_inputs(kwargs)).last_hidden_state
        if mlm_labels is None:
            return TaskOutput(None, (self.cls_predictions(hidden), self.cpc(hidden)))
        chosen = mlm_labels != -100  # project only the predicted tokens through the vocabulary
        mlm_logits = self.cls_predictions(hidden[chosen])
        mlm_loss, mlm_acc = _ce_accuracy(mlm_logits, mlm_labels[chosen])
        loss, metrics = mlm_loss, {"mlm_loss": mlm_loss.detach(), "mlm_acc": mlm_acc}
        cpc_logits = None
        if cpc_labels is not None:
            picked = cpc_labels != -100
            cpc_logits = self.cpc(hidden[picked])
            cpc_loss, cpc_acc = _ce_accuracy(cpc_logits, cpc_labels[picked])
            # A batch may pick no cell (the CE of no tokens is NaN): add the CPC loss only where it has tokens,
            # chosen in the graph rather than by reading the mask on the host.
            loss = torch.where(picked.any(), loss + cpc_loss, loss)
            metrics.update(cpc_loss=cpc_loss.detach(), cpc_acc=cpc_acc)
        return TaskOutput(loss, (mlm_logits, cpc_logits), metrics)


class StructuralLMForTokenClassification(StructuralLMPreTrainedModel):
    """Entity labelling (FUNSD): every token -> dropout -> ``classifier`` (the release's ``cls/squad/output_*``);
    CE over tokens with a label (each word's first sub-token), -100 elsewhere."""

    head_kind = "token-classification"
    optional_keys = (r"^classifier\.",)

    def __init__(self, config: StructuralLMConfig):
        super().__init__(config)
        self.bert = StructuralLMModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(self, input_ids, labels=None, **kwargs: Any) -> TaskOutput:
        logits = self.classifier(self.dropout(self.bert(input_ids, **_encoder_inputs(kwargs)).last_hidden_state))
        if labels is None:
            return TaskOutput(None, logits)
        loss, acc = _ce_accuracy(logits, labels)
        return TaskOutput(loss, logits, {"accuracy": acc})


class StructuralLMForQuestionAnswering(StructuralLMPreTrainedModel):
    """Extractive QA (DocVQA): start/end logits over tokens (``qa.qa_outputs``); no released head exists."""

    head_kind = "qa"
    optional_keys = (r"^qa\.",)

    def __init__(self, config: StructuralLMConfig):
        super().__init__(config)
        self.bert = StructuralLMModel(config, add_pooling_layer=False)
        self.qa = SpanQAHead(config.hidden_size)
        self.init_weights()

    def forward(self, input_ids, start_positions=None, end_positions=None, **kwargs: Any) -> TaskOutput:
        """``start_positions``/``end_positions``: token indices of the answer span (0 = no answer in the window)."""
        start, end = self.qa(self.bert(input_ids, **_encoder_inputs(kwargs)).last_hidden_state)
        if start_positions is None or end_positions is None:
            return TaskOutput(None, (start, end))
        loss = (F.cross_entropy(start.float(), start_positions) + F.cross_entropy(end.float(), end_positions)) / 2
        return TaskOutput(loss, (start, end))


class StructuralLMForSequenceClassification(StructuralLMPreTrainedModel):
    """Document classification (RVL-CDIP): pooled ``<s>`` -> dropout -> ``classifier``; CE loss."""

    head_kind = "sequence-classification"
    optional_keys = (r"^classifier\.",)

    def __init__(self, config: StructuralLMConfig):
        super().__init__(config)
        self.bert = StructuralLMModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(self, input_ids, labels=None, **kwargs: Any) -> TaskOutput:
        logits = self.classifier(self.dropout(self.bert(input_ids, **_encoder_inputs(kwargs)).pooler_output))
        if labels is None:
            return TaskOutput(None, logits)
        loss, acc = _ce_accuracy(logits, labels)
        return TaskOutput(loss, logits, {"accuracy": acc})
