"""StructVBERT models: BERT text embeddings, the region encoder, one stream through core's post-LN stack, heads.

The stream is ``[regions] + [text]`` (regions first). A region's embedding is ``(LN(fc(feat)) + LN(fc(box))) / 2``
and carries no position or type embedding. State-dict keys are our module names (there is no Hugging Face peer
for the one-stream model); ``from_pretrained`` also reads the released files (see ``convert.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers import BlockSpec, MaskedLMHead, Pooler, TextEmbeddings, TransformerStack, get_activation
from alicemind.core.modeling import LoadedCheckpoint, PreTrainedModel, init_bert_weights
from alicemind.structvbert.config import StructVBertConfig

VISUAL_LOSSES = ("obj", "attr", "feat")


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # the text part, [B, L, H]
    visual_hidden_state: torch.Tensor  # the region part, [B, R, H]
    pooler_output: torch.Tensor  # dense + tanh of the first text token ([CLS])


@dataclass
class TaskOutput:
    """Loss (when labels are given), logits, and per-objective metrics for logging."""

    loss: torch.Tensor | None
    logits: Any
    metrics: dict[str, torch.Tensor] | None = None


class VisualFeatEncoder(nn.Module):
    """Region features and boxes -> the hidden size: the average of the two normalised projections."""

    def __init__(self, feat_dim: int, pos_dim: int, hidden_size: int, *, eps: float = 1e-12, dropout: float = 0.1):
        super().__init__()
        self.visn_fc = nn.Linear(feat_dim, hidden_size)
        self.visn_layer_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.box_fc = nn.Linear(pos_dim, hidden_size)
        self.box_layer_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, feats: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        x = self.visn_layer_norm(self.visn_fc(feats))
        y = self.box_layer_norm(self.box_fc(boxes))
        return self.dropout((x + y) / 2)


def answer_mlp(in_dim: int, hidden_size: int, num_outputs: int, eps: float = 1e-12) -> nn.Sequential:
    """The original's ``logit_fc``: Linear(in -> 2H), GeLU, LayerNorm, Linear(2H -> outputs); keys 0/2/3."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_size * 2), nn.GELU(), nn.LayerNorm(hidden_size * 2, eps=eps),
        nn.Linear(hidden_size * 2, num_outputs),
    )  # fmt: skip


class StructVBertPreTrainedModel(PreTrainedModel):
    """Shared init and checkpoint reading of every StructVBERT class."""

    config_class = StructVBertConfig
    head_kind: str = "model"  # which released head this class reads (see convert.py)

    def init_weights(self) -> None:
        """BERT init as the original's ``init_bert_weights`` (it overwrites the padding rows too)."""
        init_bert_weights(self, self.config.initializer_range, zero_padding_rows=False)

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        from alicemind.structvbert.convert import read_structvbert_checkpoint

        return read_structvbert_checkpoint(cls, path, **config_overrides)


class StructVBertModel(StructVBertPreTrainedModel):
    """The one-stream encoder: text embeddings, region encoder, ``[regions] + [text]`` through the stack, pooler."""

    def __init__(self, config: StructVBertConfig):
        super().__init__(config)
        c = config
        self.embeddings = TextEmbeddings(
            c.vocab_size, c.hidden_size, max_positions=c.max_position_embeddings, type_vocab_size=c.type_vocab_size,
            pad_token_id=0, layer_norm_eps=c.layer_norm_eps, dropout=c.hidden_dropout_prob,
        )  # fmt: skip
        if c.embedding_padding_idx:
            # The original builds all three tables with padding_idx=0: row 0 of each gets no gradient.
            self.embeddings.position_embeddings.padding_idx = 0
            self.embeddings.token_type_embeddings.padding_idx = 0
        self.visual = VisualFeatEncoder(
            c.visual_feat_dim, c.visual_pos_dim, c.hidden_size, eps=c.layer_norm_eps, dropout=c.hidden_dropout_prob
        )
        spec = BlockSpec(
            c.hidden_size, c.num_attention_heads, c.intermediate_size, activation=c.hidden_act, norm_first=False,
            layer_norm_eps=c.layer_norm_eps, dropout=c.hidden_dropout_prob,
            attention_dropout=c.attention_probs_dropout_prob,
        )  # fmt: skip
        self.encoder = TransformerStack(spec, c.num_hidden_layers, padding_free=c.padding_free)
        self.pooler = Pooler(c.hidden_size)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        visual_feats: torch.Tensor | None = None,
        visual_boxes: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Encode ``[B, L]`` text with ``[B, R, D]`` region features and ``[B, R, 4]`` normalised boxes.

        ``visual_mask`` (1 = real region) is None in the original, which attends to zero-padded regions too; no
        regions at all (``visual_feats=None``) runs the text alone, as the text-only pre-training stage does.
        """
        text = self.embeddings(input_ids, token_type_ids=token_type_ids)
        batch = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if visual_feats is None:
            regions = text.new_zeros(batch, 0, text.shape[-1])
        else:
            if visual_boxes is None:
                raise ValueError("visual_feats need visual_boxes (normalised x1, y1, x2, y2 per region)")
            if visual_feats.shape[-1] != self.config.visual_feat_dim:
                raise ValueError(
                    f"region features have dimension {visual_feats.shape[-1]}, the model takes "
                    f"{self.config.visual_feat_dim}"
                )
            regions = self.visual(visual_feats.to(text.dtype), visual_boxes.to(text.dtype))
        num_regions = regions.shape[1]
        if visual_mask is None:
            visual_mask = attention_mask.new_ones(batch, num_regions)
        mask = torch.cat([visual_mask.to(attention_mask.dtype), attention_mask], dim=1).bool()
        hidden = self.encoder(torch.cat([regions, text], dim=1), padding_mask=mask).last_hidden_state
        visual_hidden, text_hidden = hidden[:, :num_regions], hidden[:, num_regions:]
        return EncoderOutput(text_hidden, visual_hidden, self.pooler(text_hidden))


_INPUTS = ("visual_feats", "visual_boxes", "attention_mask", "token_type_ids", "visual_mask")


def _encoder_inputs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.get(k) for k in _INPUTS}


def soft_score_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The original's VQA loss: BCE-with-logits against soft scores, mean over entries times the answer count."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float()) * logits.shape[-1]


def _picked_score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return targets.float().gather(1, logits.argmax(-1, keepdim=True)).mean()


class StructVBertForVQA(StructVBertPreTrainedModel):
    """Pooled [CLS] -> ``logit_fc`` over ``config.answers``; soft-score BCE (VQA) or one-hot targets (GQA)."""

    head_kind = "vqa"
    optional_keys = (r"^logit_fc\.",)

    def __init__(self, config: StructVBertConfig):
        super().__init__(config)
        if not config.num_answers:
            raise ValueError("StructVBertForVQA needs config.answers (the answer vocabulary, label2ans)")
        self.bert = StructVBertModel(config)
        self.logit_fc = answer_mlp(config.hidden_size, config.hidden_size, config.num_answers, config.layer_norm_eps)
        self.init_weights()

    def forward(self, input_ids, labels=None, **kwargs: Any) -> TaskOutput:
        """``labels``: ``[B, num_answers]`` soft scores (VQA) or one-hot (GQA)."""
        logits = self.logit_fc(self.bert(input_ids, **_encoder_inputs(kwargs)).pooler_output)
        if labels is None:
            return TaskOutput(None, logits)
        return TaskOutput(soft_score_loss(logits, labels), logits, {"score": _picked_score(logits, labels).detach()})


class StructVBertForNLVR2(StructVBertPreTrainedModel):
    """Each (sentence, image) of a pair is encoded alone; the two pooled vectors, concatenated, -> 2 classes."""

    head_kind = "nlvr2"
    optional_keys = (r"^logit_fc\.",)

    def __init__(self, config: StructVBertConfig):
        super().__init__(config)
        self.bert = StructVBertModel(config)
        self.logit_fc = answer_mlp(2 * config.hidden_size, config.hidden_size, 2, config.layer_norm_eps)
        self.init_weights()

    def forward(self, input_ids, visual_feats, visual_boxes, labels=None, **kwargs: Any) -> TaskOutput:
        """``visual_feats`` ``[B, 2, R, D]`` and ``visual_boxes`` ``[B, 2, R, 4]``: the two images of each pair."""
        if visual_feats.dim() != 4 or visual_feats.shape[1] != 2:
            raise ValueError(
                f"NLVR2 takes two images per example: visual_feats [B, 2, R, D], got {tuple(visual_feats.shape)}"
            )
        batch = input_ids.shape[0]

        def twice(t):
            return None if t is None else t.repeat_interleave(2, dim=0)

        visual_mask = kwargs.get("visual_mask")
        pooled = self.bert(
            twice(input_ids), visual_feats.flatten(0, 1), visual_boxes.flatten(0, 1),
            attention_mask=twice(kwargs.get("attention_mask")), token_type_ids=twice(kwargs.get("token_type_ids")),
            visual_mask=None if visual_mask is None else visual_mask.flatten(0, 1),
        ).pooler_output  # fmt: skip
        logits = self.logit_fc(pooled.reshape(batch, -1))
        if labels is None:
            return TaskOutput(None, logits)
        loss = F.cross_entropy(logits.float(), labels)
        return TaskOutput(loss, logits, {"accuracy": (logits.argmax(-1) == labels).float().mean().detach()})


class RegionHead(nn.Module):
    """The original's ``BertVisualObjHead``: a transform (dense, GeLU, LN) then one decoder per visual loss."""

    def __init__(self, config: StructVBertConfig):
        super().__init__()
        h = config.hidden_size
        self.dense = nn.Linear(h, h)
        self.act = get_activation(config.hidden_act)
        self.norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        sizes = {"obj": config.num_object_labels, "attr": config.num_attribute_labels, "feat": config.visual_feat_dim}
        self.decoder_dict = nn.ModuleDict({k: nn.Linear(h, sizes[k]) for k in VISUAL_LOSSES})

    def forward(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.norm(self.act(self.dense(hidden)))
        return {k: decoder(x) for k, decoder in self.decoder_dict.items()}


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``valid`` (same shape), 0 where nothing is valid."""
    weights = valid.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def _masked_ce(
    logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CE and accuracy over the rows with a label (not -100, and ``valid`` where given); both 0 over no row.

    Every row is scored and the others masked out, never selected or branched on, so under torch.compile
    neither a shape nor a decision depends on the data (the mean over valid rows is the same number)."""
    valid = labels != -100 if valid is None else valid & (labels != -100)
    target = labels.clamp_min(0)
    per = F.cross_entropy(logits.float().flatten(0, -2), target.flatten(), reduction="none").view(labels.shape)
    return _masked_mean(per, valid), _masked_mean((logits.argmax(-1) == target).float(), valid)


class StructVBertForPreTraining(StructVBertPreTrainedModel):
    """Every pre-training task of the talk: masked LM (``cls_predictions``, tied), masked region feature
    regression and object/attribute classification (``obj_predict_head``), image-text matching
    (``cls_seq_relationship``) and QA (``answer_head`` over ``config.answers``). A task's loss is computed when
    its labels are in the batch, so a stage mixes tasks by what its data carries."""

    head_kind = "pretraining"
    optional_keys = (r"^cls_predictions\.", r"^cls_seq_relationship\.", r"^obj_predict_head\.", r"^answer_head\.")

    def __init__(self, config: StructVBertConfig):
        super().__init__(config)
        h = config.hidden_size
        self.bert = StructVBertModel(config)
        self.cls_predictions = MaskedLMHead(h, config.vocab_size, activation=config.hidden_act,
                                            layer_norm_eps=config.layer_norm_eps)  # fmt: skip
        self.cls_seq_relationship = nn.Linear(h, 2)
        self.obj_predict_head = RegionHead(config)
        self.answer_head = answer_mlp(h, h, config.num_answers, config.layer_norm_eps) if config.num_answers else None
        self.init_weights()
        self.cls_predictions.tie_to(self.bert.embeddings.word_embeddings)

    def forward(self, input_ids, mlm_labels=None, region_mask=None, region_targets=None, obj_labels=None,
                attr_labels=None, matched_labels=None, answer_labels=None, **kwargs: Any) -> TaskOutput:  # fmt: skip
        """Labels: ``mlm_labels`` [B, L] (-100 = not predicted); ``region_mask`` [B, R] (masked regions, whose
        input features the collator zeroed) with ``region_targets`` [B, R, D] the original features,
        ``obj_labels``/``attr_labels`` [B, R] (-100 = not predicted); ``matched_labels`` [B] (1 = the text
        belongs to the image); ``answer_labels`` [B, A] soft scores, rows of -1 where a pair has no question."""
        enc = self.bert(input_ids, **_encoder_inputs(kwargs))
        losses: dict[str, torch.Tensor] = {}
        metrics: dict[str, torch.Tensor] = {}
        # Which losses run is decided by which labels the batch carries (the collator's choice, static per stage);
        # a loss over no item (nothing masked, no question) is 0 rather than skipped after reading the data.
        if mlm_labels is not None:
            chosen = mlm_labels != -100  # project only the predicted tokens through the vocabulary
            losses["mlm"], metrics["mlm_acc"] = _masked_ce(
                self.cls_predictions(enc.last_hidden_state[chosen]), mlm_labels[chosen]
            )
        if region_mask is not None:
            masked = region_mask.bool()
            outputs = self.obj_predict_head(enc.visual_hidden_state)  # every region, the unmasked ones masked out
            if region_targets is not None:
                per = F.smooth_l1_loss(outputs["feat"].float(), region_targets.float(), reduction="none").mean(-1)
                losses["feat"] = _masked_mean(per, masked)
            for name, labels in (("obj", obj_labels), ("attr", attr_labels)):
                if labels is not None:
                    losses[name], metrics[f"{name}_acc"] = _masked_ce(outputs[name], labels, masked)
        if matched_labels is not None:
            losses["itm"], metrics["itm_acc"] = _masked_ce(self.cls_seq_relationship(enc.pooler_output), matched_labels)
        if answer_labels is not None and self.answer_head is not None:
            has_question = answer_labels[:, 0] >= 0
            # soft_score_loss per pair: the BCE summed over answers (its mean times the answer count).
            per = F.binary_cross_entropy_with_logits(
                self.answer_head(enc.pooler_output).float(), answer_labels.float(), reduction="none"
            ).sum(-1)
            losses["qa"] = _masked_mean(per, has_question)
        if not losses:
            return TaskOutput(None, enc)
        metrics.update({f"{k}_loss": v.detach() for k, v in losses.items()})
        return TaskOutput(sum(losses.values()), enc, metrics)
