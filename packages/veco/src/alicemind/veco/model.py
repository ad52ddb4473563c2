"""VECO NLU models: the XLM-R-architecture encoder assembled from core layers, and every task head.

Module names are core's; ``save_pretrained`` writes Hugging Face XLM-R key names (``roberta.*``, ``classifier.*``,
``qa_outputs.*``), so ``transformers.XLMRobertaModel.from_pretrained`` reads our folders unchanged, and
``from_pretrained`` reads every released VECO NLU layout (see ``convert.py``). The encoder can carry VECO's plug-in
cross-attention (``cross_attention=True``, pre-training only): each block then has a cross-attention sub-layer
between self-attention and the feed-forward, used when ``cross_states`` are passed and skipped otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers import BlockSpec, Pooler, SequenceTooLongError, TextEmbeddings, TransformerStack
from alicemind.core.modeling import LoadedCheckpoint, PreTrainedModel, init_bert_weights
from alicemind.veco.config import VecoConfig


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class TaskOutput:
    """Loss (when labels are given), logits, optional hidden states, and metrics for logging."""

    loss: torch.Tensor | None
    logits: Any
    hidden_states: tuple[torch.Tensor, ...] | None = None
    metrics: dict[str, torch.Tensor] | None = None


def encoder_spec(config: VecoConfig, *, cross_attention: bool = False) -> BlockSpec:
    """The post-LN block of VECO (XLM-R / fairseq ``encoder_normalize_before False``)."""
    c = config
    return BlockSpec(
        c.hidden_size,
        c.num_attention_heads,
        c.intermediate_size,
        activation=c.hidden_act,
        norm_first=False,
        layer_norm_eps=c.layer_norm_eps,
        dropout=c.hidden_dropout_prob,
        attention_dropout=c.attention_probs_dropout_prob,
        cross_attention=cross_attention,
    )


def padding_aware_positions(input_ids: torch.Tensor, pad_token_id: int, past_length: int = 0) -> torch.Tensor:
    """fairseq ``make_positions`` / HF RoBERTa position ids, shifted so 0 is the first real token: real tokens count
    from 0 in order, padding gets -1 (its row is the padding row, ``pad_token_id``, once the offset is added)."""
    real = input_ids.ne(pad_token_id).long()
    return (torch.cumsum(real, dim=1) + past_length) * real - 1


def embed_tokens(embeddings: TextEmbeddings, input_ids, pad_token_id: int, position_ids=None, **kwargs):
    """Run ``embeddings`` with padding-aware positions, refusing sequences longer than the position table."""
    if position_ids is None and input_ids is not None:
        position_ids = padding_aware_positions(input_ids, pad_token_id)
    # Reading the data is a host sync and a graph break inside torch.compile: the check runs eagerly only.
    if position_ids is not None and embeddings.max_positions is not None and not torch.compiler.is_compiling():
        longest = int(position_ids.max()) + 1 if position_ids.numel() else 0
        if longest > embeddings.max_positions:
            raise SequenceTooLongError(
                f"sequence of {longest} tokens is longer than the model's {embeddings.max_positions} positions; "
                "truncate the input (tokenizer truncation=True, max_length)"
            )
    return embeddings(input_ids, position_ids=position_ids, **kwargs)


class VecoPreTrainedModel(PreTrainedModel):
    """Shared init, key translation and checkpoint reading for every VECO NLU class."""

    config_class = VecoConfig
    base_prefix = "roberta."  # where the encoder lives inside a head model (Hugging Face's base_model_prefix)

    def init_weights(self) -> None:
        """BERT init (``init_bert_params``): normal(0, initializer_range), zero biases and padding row, unit norms."""
        init_bert_weights(self, self.config.initializer_range)

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        from alicemind.veco.convert import to_hf_keys

        return to_hf_keys(self.state_dict(), self.file_prefix())

    @classmethod
    def import_state_dict(cls, state_dict, config):
        from alicemind.veco.convert import from_hf_keys

        return from_hf_keys(state_dict, cls.file_prefix())

    @classmethod
    def file_prefix(cls) -> str:
        return "" if cls is VecoModel else cls.base_prefix

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        from alicemind.veco.convert import read_nlu_checkpoint

        return read_nlu_checkpoint(cls, path, **config_overrides)


class VecoModel(VecoPreTrainedModel):
    """The encoder: RoBERTa-style embeddings (positions offset by pad + 1, one token type), a post-LN stack and the
    ``<s>`` pooler. With ``cross_attention=True`` every block also holds the plug-in cross-attention."""

    # A masked-LM checkpoint (pre-training, XLMRobertaForMaskedLM) has no pooler: it is initialised, with a warning.
    optional_keys = (r"^pooler\.",)

    def __init__(self, config: VecoConfig, *, add_pooling_layer: bool = True, cross_attention: bool = False):
        super().__init__(config)
        c = config
        self.embeddings = TextEmbeddings(
            c.vocab_size,
            c.hidden_size,
            max_positions=c.max_position_embeddings,
            type_vocab_size=c.type_vocab_size,
            pad_token_id=c.pad_token_id,
            position_offset=c.position_offset,
            layer_norm_eps=c.layer_norm_eps,
            dropout=c.hidden_dropout_prob,
        )
        self.encoder = TransformerStack(
            encoder_spec(c, cross_attention=cross_attention), c.num_hidden_layers, padding_free=c.padding_free
        )
        self.pooler = Pooler(c.hidden_size) if add_pooling_layer else None
        if type(self) is VecoModel:
            self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        *,
        cross_states: torch.Tensor | None = None,
        cross_mask: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Encode ``[B, L]`` ids (``attention_mask`` 1 = real token). ``cross_states`` ``[B, S, H]`` (the other
        sequence's hidden states) turn the plug-in cross-attention on; without them it is unplugged."""
        if attention_mask is None and input_ids is not None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        x = embed_tokens(
            self.embeddings,
            input_ids,
            self.config.pad_token_id,
            position_ids,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
        )
        out = self.encoder(
            x,
            padding_mask=attention_mask,
            output_hidden_states=output_hidden_states,
            encoder_states=cross_states,
            encoder_padding_mask=cross_mask,
            skip_cross_attention=cross_states is None,
        )
        hidden = out.last_hidden_state
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return EncoderOutput(hidden, pooled, out.hidden_states)


def _loss_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=-100)
    valid = labels != -100
    # Correct over valid, counted without selecting rows (no data-dependent shape under torch.compile); 0 when
    # nothing is valid. Counts are exact integers in fp32, so this equals the mean over the valid rows.
    acc = ((logits.argmax(-1) == labels) & valid).sum().float() / valid.sum().clamp(min=1).float()
    return loss, {"loss": loss.detach(), "accuracy": acc}


class VecoClassificationHead(nn.Module):
    """XLM-R's sentence head on ``<s>``: dropout, ``dense``, tanh, dropout, ``out_proj``."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(hidden[:, 0])))
        return self.out_proj(self.dropout(x))


def _head_dropout(config: VecoConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


class VecoForSequenceClassification(VecoPreTrainedModel):
    """Sentence(-pair) classification (XNLI, PAWS-X); ``num_labels == 1`` is regression (MSE)."""

    optional_keys = (r"^classifier\.",)

    def __init__(self, config: VecoConfig):
        super().__init__(config)
        self.roberta = VecoModel(config, add_pooling_layer=False)
        self.classifier = VecoClassificationHead(config.hidden_size, config.num_labels, _head_dropout(config))
        self.init_weights()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs) -> TaskOutput:
        enc = self.roberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        logits = self.classifier(enc.last_hidden_state)
        if labels is None:
            return TaskOutput(None, logits, enc.hidden_states)
        if self.config.num_labels == 1:
            loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            return TaskOutput(loss, logits, metrics={"loss": loss.detach()})
        loss, metrics = _loss_accuracy(logits, labels)
        return TaskOutput(loss, logits, metrics=metrics)


class VecoForTokenClassification(VecoPreTrainedModel):
    """Per-token tags (PAN-X NER, UDPOS); labels -100 on sub-word continuations and specials."""

    optional_keys = (r"^classifier\.",)

    def __init__(self, config: VecoConfig):
        super().__init__(config)
        self.roberta = VecoModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(_head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs) -> TaskOutput:
        enc = self.roberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        logits = self.classifier(self.dropout(enc.last_hidden_state))
        if labels is None:
            return TaskOutput(None, logits, enc.hidden_states)
        loss, metrics = _loss_accuracy(logits, labels)
        return TaskOutput(loss, logits, metrics=metrics)


class VecoForQuestionAnswering(VecoPreTrainedModel):
    """Extractive span QA (XQuAD, MLQA, TyDiQA-GoldP): start/end logits from ``qa_outputs``."""

    optional_keys = (r"^qa_outputs\.",)

    def __init__(self, config: VecoConfig):
        if config.num_labels != 2:  # start and end: transformers sizes qa_outputs by num_labels
            config = VecoConfig.from_dict({**config.to_dict(), "num_labels": 2, "id2label": None, "label2id": None})
        super().__init__(config)
        self.roberta = VecoModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, start_positions=None, end_positions=None,
        **kwargs,
    ) -> TaskOutput:  # fmt: skip
        """With ``start_positions``/``end_positions`` the loss is the mean of the two cross-entropies (HF's)."""
        enc = self.roberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        start, end = self.qa_outputs(enc.last_hidden_state).unbind(-1)
        if start_positions is None or end_positions is None:
            return TaskOutput(None, (start, end), enc.hidden_states)
        length = start.shape[1]
        start_positions, end_positions = start_positions.clamp(0, length), end_positions.clamp(0, length)
        loss = (
            F.cross_entropy(start.float(), start_positions, ignore_index=length)
            + F.cross_entropy(end.float(), end_positions, ignore_index=length)
        ) / 2
        return TaskOutput(loss, (start, end), metrics={"loss": loss.detach()})


class VecoForMultipleChoice(VecoPreTrainedModel):
    """``[B, C, L]`` choices, each scored by ``classifier`` over the pooled ``<s>``."""

    optional_keys = (r"^classifier\.",)

    def __init__(self, config: VecoConfig):
        super().__init__(config)
        self.roberta = VecoModel(config)
        self.dropout = nn.Dropout(_head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> TaskOutput:
        choices = input_ids.shape[1]

        def flat(t):
            return t.flatten(0, 1) if t is not None else None

        enc = self.roberta(flat(input_ids), attention_mask=flat(attention_mask), token_type_ids=flat(token_type_ids))
        logits = self.classifier(self.dropout(enc.pooler_output)).view(-1, choices)
        if labels is None:
            return TaskOutput(None, logits)
        loss, metrics = _loss_accuracy(logits, labels)
        return TaskOutput(loss, logits, metrics=metrics)
