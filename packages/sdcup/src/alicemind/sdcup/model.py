"""SDCUP encoder (UER BERT assembled from core layers with UER's LayerNorm) and its pre-training model.

State-dict keys are our module names (``embeddings.*``, ``encoder.layers.{i}.*``); ``from_pretrained`` also reads
the released UER files (``convert.py``), and ``export_huggingface_bert`` writes a Hugging Face BERT folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers import BlockSpec, TextEmbeddings, TransformerStack, get_activation
from alicemind.core.modeling import LoadedCheckpoint, PreTrainedModel, init_bert_weights
from alicemind.sdcup.config import SdcupConfig


class UerLayerNorm(nn.Module):
    """UER's norm: ``weight * (x - mean) / (std + eps) + bias`` with the population std (eps outside the root).

    torch's LayerNorm divides by ``sqrt(var + eps)``; the two differ by about ``eps / std`` relatively, so the
    released weights are run with this arithmetic, not approximated by ``nn.LayerNorm``.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True, unbiased=False)
        return self.weight * (x - mean) / (std + self.eps) + self.bias

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps} (std + eps)"


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class TaskOutput:
    """Loss (when labels are given), logits, and per-objective metrics for logging."""

    loss: torch.Tensor | None
    logits: Any
    metrics: dict[str, torch.Tensor] | None = None


class SdcupPreTrainedModel(PreTrainedModel):
    """Shared init and checkpoint reading of every SDCUP class."""

    config_class = SdcupConfig
    encoder_prefix = ""  # where the encoder sits in this class's state dict
    reads_uer_mlm = False  # whether UER's target.mlm_* weights have a place in this class

    def init_weights(self) -> None:
        """BERT init (normal(0, initializer_range), zero biases) and unit UER norms; LSTMs keep torch's init."""

        def reset(module: nn.Module) -> None:
            if isinstance(module, UerLayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

        # UER's nn.Embedding tables have no padding row.
        init_bert_weights(self, self.config.initializer_range, zero_padding_rows=False, other=reset)

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        from alicemind.sdcup.convert import read_sdcup_checkpoint

        return read_sdcup_checkpoint(cls, path, **config_overrides)


class SdcupEncoder(SdcupPreTrainedModel):
    """UER BERT: word + position + segment embeddings, UER norm, post-LN blocks (erf gelu, UER norms).

    The attention mask is ``token_type_ids > 0`` (segment 0 is padding), as in UER.
    """

    def __init__(self, config: SdcupConfig):
        super().__init__(config)
        c = config
        self.embeddings = TextEmbeddings(
            c.vocab_size,
            c.hidden_size,
            max_positions=c.max_position_embeddings,
            type_vocab_size=c.type_vocab_size,
            pad_token_id=None,
            layer_norm=False,
            dropout=c.hidden_dropout_prob,
        )
        # TextEmbeddings applies its ``norm`` before dropout: put UER's norm in that slot.
        self.embeddings.norm = UerLayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        spec = BlockSpec(
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            activation=c.hidden_act,
            norm_first=False,
            layer_norm_eps=c.layer_norm_eps,
            dropout=c.hidden_dropout_prob,
            attention_dropout=c.attention_probs_dropout_prob,
            norm_class=UerLayerNorm,
        )
        self.encoder = TransformerStack(spec, c.num_hidden_layers, padding_free=c.padding_free)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encode ``[B, L]`` ids with segments 1 (question) / 2 (schema) / 0 (padding)."""
        if token_type_ids is None:
            raise ValueError("SDCUP needs token_type_ids (1 question, 2 schema, 0 padding): the mask comes from them")
        mask = token_type_ids > 0 if attention_mask is None else attention_mask.bool()
        x = self.embeddings(input_ids, token_type_ids=token_type_ids)
        out = self.encoder(x, padding_mask=mask, output_hidden_states=output_hidden_states)
        return EncoderOutput(out.last_hidden_state, out.hidden_states)


class UerMlmHead(nn.Module):
    """UER's MLM target: ``dense`` -> gelu -> UER norm -> ``decoder`` (its own weight and bias, untied)."""

    def __init__(self, config: SdcupConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.norm = UerLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(hidden))))


class BiaffineDependencyScorer(nn.Module):
    """Biaffine parser scoring (Dozat & Manning): for each question token (dependent) an arc score to every
    schema item (head), and label scores for each (token, item) pair.

    ``arc[b, i, j] = d_i^T U h_j + h_j . u``; ``rel[b, i, j, r] = d_i^T U_r h_j + W_r [d_i; h_j] + b_r``.
    """

    def __init__(self, hidden_size: int, arc_size: int, rel_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.arc_dep = nn.Linear(hidden_size, arc_size)
        self.arc_head = nn.Linear(hidden_size, arc_size)
        self.rel_dep = nn.Linear(hidden_size, rel_size)
        self.rel_head = nn.Linear(hidden_size, rel_size)
        self.arc_weight = nn.Parameter(torch.zeros(arc_size, arc_size))
        self.arc_head_bias = nn.Parameter(torch.zeros(arc_size))
        self.rel_weight = nn.Parameter(torch.zeros(num_labels, rel_size, rel_size))
        self.rel_linear = nn.Linear(2 * rel_size, num_labels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens`` [B, T, H], ``items`` [B, N, H] -> arc scores [B, T, N], label scores [B, T, N, R]."""
        act = nn.functional.leaky_relu
        d, h = self.dropout(act(self.arc_dep(tokens), 0.1)), self.dropout(act(self.arc_head(items), 0.1))
        arc = torch.einsum("bta,ac,bnc->btn", d, self.arc_weight, h) + (h @ self.arc_head_bias)[:, None, :]
        rd, rh = self.dropout(act(self.rel_dep(tokens), 0.1)), self.dropout(act(self.rel_head(items), 0.1))
        bilinear = torch.einsum("bta,rac,bnc->btnr", rd, self.rel_weight, rh)
        t, n = rd.shape[1], rh.shape[1]
        pair = torch.cat([rd[:, :, None].expand(-1, -1, n, -1), rh[:, None].expand(-1, t, -1, -1)], dim=-1)
        return arc, bilinear + self.rel_linear(pair)


def pool_columns(hidden: torch.Tensor, column_index: torch.Tensor, column_token_mask: torch.Tensor) -> torch.Tensor:
    """Mean of each column's sub-token vectors: ``[B, L, H]`` -> ``[B, N, H]`` (empty slots give zeros)."""
    b, n, k = column_index.shape
    gathered = hidden.gather(1, column_index.reshape(b, n * k, 1).expand(-1, -1, hidden.shape[-1])).view(b, n, k, -1)
    weights = column_token_mask.to(hidden.dtype)[..., None]
    return (gathered * weights).sum(2) / weights.sum(2).clamp_min(1.0)


def gather_tokens(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``hidden[b, index[b, t]]``: ``[B, L, H]``, ``[B, T]`` -> ``[B, T, H]``."""
    return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``valid`` (same number of elements), 0 when none is."""
    weights = valid.reshape(values.shape).to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


class SdcupForPreTraining(SdcupPreTrainedModel):
    """Schema-dependency prediction (biaffine arcs question token -> schema item, and their labels) plus MLM.

    Schema items are the columns (mean of their sub-tokens) with the dummy column last, which is the head of
    every token linked to no column (label ``null``).
    """

    encoder_prefix = "sdcup."
    reads_uer_mlm = True
    optional_keys = (r"^mlm\.", r"^dependency\.")

    def __init__(self, config: SdcupConfig):
        super().__init__(config)
        self.sdcup = SdcupEncoder(config)
        self.mlm = UerMlmHead(config)
        c = config
        self.dependency = BiaffineDependencyScorer(
            c.hidden_size, c.arc_size, c.rel_size, c.num_dependency_labels, c.hidden_dropout_prob
        )
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        question_index: torch.Tensor,
        question_mask: torch.Tensor,
        column_index: torch.Tensor,
        column_token_mask: torch.Tensor,
        column_mask: torch.Tensor,
        mlm_labels: torch.Tensor | None = None,
        dependency_heads: torch.Tensor | None = None,
        dependency_labels: torch.Tensor | None = None,
        **_: Any,
    ) -> TaskOutput:
        """``dependency_heads`` [B, T]: column index each question token depends on (-100 = padding);
        ``dependency_labels`` [B, T]: its relation id; ``mlm_labels`` [B, L]: original ids, -100 elsewhere."""
        hidden = self.sdcup(input_ids, token_type_ids).last_hidden_state
        tokens = gather_tokens(hidden, question_index)
        items = pool_columns(hidden, column_index, column_token_mask)
        arc, rel = self.dependency(tokens, items)
        arc = arc.masked_fill(~column_mask[:, None, :], torch.finfo(arc.dtype).min)
        if dependency_heads is None:
            return TaskOutput(None, (arc, rel))
        valid = (dependency_heads != -100) & question_mask
        # Every token is scored and the padding masked out (not selected), so no shape and no branch depends on
        # the data under torch.compile; a loss or accuracy over no token is 0.
        heads = dependency_heads.clamp_min(0)
        arc_loss = _masked_mean(F.cross_entropy(arc.float().flatten(0, 1), heads.flatten(), reduction="none"), valid)
        gold_rel = rel.gather(2, heads[..., None, None].expand(-1, -1, 1, rel.shape[-1])).squeeze(2)  # [B, T, R]
        rel_target = dependency_labels.clamp_min(0)
        rel_loss = _masked_mean(
            F.cross_entropy(gold_rel.float().flatten(0, 1), rel_target.flatten(), reduction="none"), valid
        )
        loss = arc_loss + rel_loss
        metrics = {
            "arc_loss": arc_loss.detach(),
            "rel_loss": rel_loss.detach(),
            "arc_acc": _masked_mean((arc.argmax(-1) == heads).flatten().float(), valid),
            "rel_acc": _masked_mean((gold_rel.argmax(-1) == rel_target).flatten().float(), valid),
        }
        if mlm_labels is not None:
            # The collator drops mlm_labels from a batch with no masked token; all -100 here adds 0 to the loss.
            chosen = mlm_labels != -100
            logits = self.mlm(hidden[chosen])  # project only the masked tokens through the vocabulary
            target = mlm_labels[chosen]
            ones = torch.ones_like(target, dtype=torch.bool)
            mlm_loss = _masked_mean(F.cross_entropy(logits.float(), target, reduction="none"), ones)
            loss = loss + mlm_loss
            metrics["mlm_loss"] = mlm_loss.detach()
            metrics["mlm_acc"] = _masked_mean((logits.argmax(-1) == target).float(), ones)
        metrics["dependency_loss"] = (arc_loss + rel_loss).detach()
        return TaskOutput(loss, (arc, rel), metrics)
