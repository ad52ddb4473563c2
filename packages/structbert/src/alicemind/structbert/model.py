"""StructBERT models: the BERT-architecture encoder assembled from core layers, and every task head.

Module names are our own (core's block); ``save_pretrained`` writes Hugging Face BERT key names, so
``transformers.BertModel.from_pretrained`` reads our folders unchanged, and ``from_pretrained`` reads every
released StructBERT layout (see ``convert.py``).
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
    ClassificationHead,
    MaskedLMHead,
    Pooler,
    SpanQAHead,
    TextEmbeddings,
    TransformerStack,
)
from alicemind.core.modeling import LoadedCheckpoint, PreTrainedModel, init_bert_weights
from alicemind.structbert import convert
from alicemind.structbert.config import StructBertConfig


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
    hidden_states: tuple[torch.Tensor, ...] | None = None
    metrics: dict[str, torch.Tensor] | None = None


class StructBertPreTrainedModel(PreTrainedModel):
    """Shared init, key translation and checkpoint reading for every StructBERT class."""

    config_class = StructBertConfig
    base_prefix = "bert."  # where the encoder lives inside a head model (Hugging Face's base_model_prefix)

    def init_weights(self) -> None:
        """BERT init: normal(0, initializer_range) for linear and embedding weights, zero biases, unit norms."""
        init_bert_weights(self, self.config.initializer_range)

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return convert.to_hf_keys(self.state_dict(), self._file_prefix(), self._multi_task())

    @classmethod
    def import_state_dict(cls, state_dict, config):
        return convert.from_hf_keys(state_dict, cls._file_prefix_for(cls), bool(config.task_num_labels), cls.__name__)

    def _file_prefix(self) -> str:
        return self._file_prefix_for(type(self))

    @staticmethod
    def _file_prefix_for(klass) -> str:
        return "" if klass is StructBertModel else klass.base_prefix

    def _multi_task(self) -> bool:
        return bool(self.config.task_num_labels)

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        return convert.read_structbert_checkpoint(cls, path, **config_overrides)


class StructBertModel(StructBertPreTrainedModel):
    """The encoder: embeddings, a post-LN transformer stack and the [CLS] pooler."""

    def __init__(self, config: StructBertConfig, *, add_pooling_layer: bool = True):
        super().__init__(config)
        c = config
        self.embeddings = TextEmbeddings(
            c.vocab_size,
            c.hidden_size,
            max_positions=c.max_position_embeddings,
            type_vocab_size=c.type_vocab_size,
            pad_token_id=c.pad_token_id,
            layer_norm_eps=c.layer_norm_eps,
            dropout=c.hidden_dropout_prob,
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
        self.encoder = TransformerStack(spec, c.num_hidden_layers, padding_free=c.padding_free)
        self.pooler = Pooler(c.hidden_size) if add_pooling_layer else None
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encode ``[B, L]`` ids; ``attention_mask`` is 1 for real tokens and 0 for padding."""
        x = self.embeddings(
            input_ids, token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds
        )
        out = self.encoder(x, padding_mask=attention_mask, output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return EncoderOutput(hidden, pooled, out.hidden_states)


def _cross_entropy_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss = F.cross_entropy(logits.float(), labels, ignore_index=-100)
    valid = labels != -100
    # Correct over valid, counted without selecting rows (no data-dependent shape under torch.compile); 0 when
    # nothing is valid. Counts are exact integers in fp32, so this equals the mean over the valid rows.
    acc = ((logits.argmax(-1) == labels) & valid).sum().float() / valid.sum().clamp(min=1).float()
    return loss, acc


class StructBertForPreTraining(StructBertPreTrainedModel):
    """MLM (weights tied to the word embeddings; also scores word-structure targets) + 3-way sentence structure."""

    optional_keys = (r"^cls_seq_relationship\.", r"^cls_predictions\.")

    def __init__(self, config: StructBertConfig, num_sentence_classes: int = 3):
        super().__init__(config)
        self.bert = StructBertModel(config)
        self.cls_predictions = MaskedLMHead(
            config.hidden_size, config.vocab_size, activation=config.hidden_act, layer_norm_eps=config.layer_norm_eps
        )
        self.cls_seq_relationship = nn.Linear(config.hidden_size, num_sentence_classes)
        self.init_weights()
        self.cls_predictions.tie_to(self.bert.embeddings.word_embeddings)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        mlm_labels=None,
        sentence_order_label=None,
        **_: Any,
    ) -> TaskOutput:
        """``mlm_labels``: original ids at predicted positions (MLM and WSO), -100 elsewhere."""
        enc = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        sso_logits = self.cls_seq_relationship(enc.pooler_output)
        if mlm_labels is None:
            return TaskOutput(None, (self.cls_predictions(enc.last_hidden_state), sso_logits))
        # Project only the predicted positions: the vocabulary matmul dominates pre-training cost otherwise.
        positions = mlm_labels != -100
        mlm_logits = self.cls_predictions(enc.last_hidden_state[positions])
        mlm_loss, mlm_acc = _cross_entropy_accuracy(mlm_logits, mlm_labels[positions])
        loss, metrics = mlm_loss, {"mlm_loss": mlm_loss.detach(), "mlm_acc": mlm_acc}
        if sentence_order_label is not None:
            sso_loss, sso_acc = _cross_entropy_accuracy(sso_logits, sentence_order_label)
            loss = loss + sso_loss
            metrics.update(sso_loss=sso_loss.detach(), sso_acc=sso_acc)
        return TaskOutput(loss, (mlm_logits, sso_logits), metrics=metrics)


class StructBertForMaskedLM(StructBertForPreTraining):
    """The pre-training model used for masked-token prediction only (same weights, same keys)."""


class StructBertForSequenceClassification(StructBertPreTrainedModel):
    """One classifier per task over the pooled [CLS]; a task with one label is regression (MSE).

    With several tasks (``config.task_num_labels``) a batch may mix tasks: ``task_ids`` routes each row's loss
    to its own head, as the original multi-task GLUE/CLUE fine-tuning does.
    """

    optional_keys = (r"^classifier\.",)

    def __init__(self, config: StructBertConfig):
        super().__init__(config)
        self.bert = StructBertModel(config)
        sizes = config.task_num_labels or [config.num_labels]
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.classifier = ClassificationHead(config.hidden_size, sizes, dropout)
        self.init_weights()

    def forward(
        self, input_ids, attention_mask=None, token_type_ids=None, labels=None, task_ids=None, **kwargs: Any
    ) -> TaskOutput:
        enc = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        logits = self.classifier(enc.pooler_output)
        single = self.classifier.num_tasks == 1
        if labels is None:
            return TaskOutput(None, logits[0] if single else logits)
        if task_ids is None and not single:
            raise ValueError("a multi-task model needs task_ids to route each row's loss")
        loss = _multitask_loss(logits, labels, task_ids)
        return TaskOutput(loss, logits[0] if single else logits)


def _multitask_loss(logits: list[torch.Tensor], labels: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
    """Mean over rows of each row's loss under its own task's head (CE, or MSE for one-output heads).

    ``task_ids=None`` (one task) takes every row as it is: no selection, so ``torch.compile`` sees no
    data-dependent shape. A task with no rows in the batch adds an exact zero (a sum over nothing).
    """
    total = logits[0].new_zeros((), dtype=torch.float32)
    for task, task_logits in enumerate(logits):
        rows = None if task_ids is None else task_ids == task
        picked, targets = (task_logits, labels) if rows is None else (task_logits[rows], labels[rows])
        if task_logits.shape[-1] == 1:
            total = total + F.mse_loss(picked.squeeze(-1).float(), targets.float(), reduction="sum")
        else:
            total = total + F.cross_entropy(picked.float(), targets.long(), reduction="sum")
    return total / labels.shape[0]


class StructBertForTokenClassification(StructBertPreTrainedModel):
    """Per-token labels (NER, e.g. CLUENER); labels -100 are ignored."""

    optional_keys = (r"^classifier\.",)

    def __init__(self, config: StructBertConfig):
        super().__init__(config)
        self.bert = StructBertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs: Any) -> TaskOutput:
        enc = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        logits = self.classifier(self.dropout(enc.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return TaskOutput(loss, logits)


class StructBertForQuestionAnswering(StructBertPreTrainedModel):
    """Extractive QA: start/end logits; positions outside the sequence are ignored in the loss."""

    optional_keys = (r"^qa\.",)

    def __init__(self, config: StructBertConfig):
        super().__init__(config)
        self.bert = StructBertModel(config, add_pooling_layer=False)
        self.qa = SpanQAHead(config.hidden_size)
        self.init_weights()

    def forward(
        self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None, end_positions=None, **kw
    ) -> TaskOutput:
        enc = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kw)
        start, end = self.qa(enc.last_hidden_state)
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start.shape[1]
            s, e = start_positions.clamp(0, ignored), end_positions.clamp(0, ignored)
            loss = (
                F.cross_entropy(start.float(), s, ignore_index=ignored)
                + F.cross_entropy(end.float(), e, ignore_index=ignored)
            ) / 2
        return TaskOutput(loss, (start, end))


class StructBertForMultipleChoice(StructBertPreTrainedModel):
    """Scores each of C choices (``[B, C, L]`` inputs) with a shared linear over the pooled [CLS]."""

    optional_keys = (r"^classifier\.",)

    def __init__(self, config: StructBertConfig):
        super().__init__(config)
        self.bert = StructBertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kw) -> TaskOutput:
        num_choices = input_ids.shape[1]

        def flat(t):
            return t.flatten(0, 1) if t is not None else None

        enc = self.bert(flat(input_ids), attention_mask=flat(attention_mask), token_type_ids=flat(token_type_ids), **kw)
        logits = self.classifier(self.dropout(enc.pooler_output)).view(-1, num_choices)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return TaskOutput(loss, logits)
