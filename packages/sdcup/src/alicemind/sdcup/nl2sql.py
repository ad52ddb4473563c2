"""SdcupForNL2SQL: the SQLova-style head of the original ``Seq2SQL_v1`` over the SDCUP encoder.

As the original builds it (errata 4.2): the context vector is the first question token's encoding; columns are
encoded twice, by ctx-conditioned attention pooling over their sub-tokens (concatenated with ctx, Linear(2H->H),
LayerNorm) and by a BiLSTM over the sub-tokens with the same pooling; one-hot knowledge features (20 per
question token, 8 per column) are concatenated. Sub-modules predict the number of select columns (``slen``),
select columns (``sc``), their aggregations (``sa``), the connector (``cco``), the number of conditions (``wn``),
condition columns (``wc``), operators (``wo``) and value start/end spans (``wv``). Differences: the pooling
ignores padded sub-tokens (the original attends over them), and one attention module per sub-module replaces
the original's per-module LSTMs over the question.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.sdcup.config import SdcupConfig
from alicemind.sdcup.model import SdcupEncoder, SdcupPreTrainedModel, TaskOutput, gather_tokens
from alicemind.sdcup.sql import AGG_OPS, COND_OPS, CONN_OPS

NEG = -1e4  # masked logits (finite, so fp16/bf16 stay finite)


class BiLSTM(nn.Module):
    """A bidirectional, batch-first LSTM with ``nn.LSTM``'s parameters (same names, shapes and init), returning
    the output sequence ``[B, T, 2 * hidden]`` from zero initial states.

    Not an ``nn.LSTM``: dynamo refuses to trace RNN modules (a graph break), so under ``torch.compile`` the
    recurrence is written out step by step from the same gate formulas; eager runs torch's fused LSTM kernel.
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        self._names = []
        for layer in range(num_layers):
            width = input_size if layer == 0 else 2 * hidden_size
            for suffix in ("", "_reverse"):
                for name, shape in ((f"weight_ih_l{layer}", (4 * hidden_size, width)),
                                    (f"weight_hh_l{layer}", (4 * hidden_size, hidden_size)),
                                    (f"bias_ih_l{layer}", (4 * hidden_size,)),
                                    (f"bias_hh_l{layer}", (4 * hidden_size,))):  # fmt: skip
                    self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape)))
                    self._names.append(name + suffix)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.LSTM``'s init: every weight and bias uniform in +-1/sqrt(hidden_size)."""
        bound = self.hidden_size**-0.5
        for name in self._names:
            nn.init.uniform_(getattr(self, name), -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            zeros = x.new_zeros(2 * self.num_layers, x.shape[0], self.hidden_size)
            weights = [getattr(self, name) for name in self._names]
            return torch.lstm(x, (zeros, zeros), weights, True, self.num_layers, self.dropout, self.training,
                              True, True)[0]  # fmt: skip
        for layer in range(self.num_layers):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            forward = self._direction(x, f"l{layer}", reverse=False)
            backward = self._direction(x, f"l{layer}_reverse", reverse=True)
            x = torch.cat([forward, backward], -1)
        return x

    def _direction(self, x: torch.Tensor, suffix: str, *, reverse: bool) -> torch.Tensor:
        w_ih, w_hh = getattr(self, f"weight_ih_{suffix}"), getattr(self, f"weight_hh_{suffix}")
        b_ih, b_hh = getattr(self, f"bias_ih_{suffix}"), getattr(self, f"bias_hh_{suffix}")
        projected = F.linear(x, w_ih, b_ih)  # every step's input projection in one matmul
        h = c = x.new_zeros(x.shape[0], self.hidden_size)
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        outputs = [None] * x.shape[1]
        for t in steps:
            i, f, g, o = (projected[:, t] + F.linear(h, w_hh, b_hh)).chunk(4, -1)
            c = f.sigmoid() * c + i.sigmoid() * g.tanh()
            h = o.sigmoid() * c.tanh()
            outputs[t] = h
        return torch.stack(outputs, 1)


class ColumnEncoder(nn.Module):
    """ctx-attention pooling of each column's sub-token vectors, then [pooled; ctx] -> Linear -> LayerNorm."""

    def __init__(self, size: int):
        super().__init__()
        self.attend = nn.Linear(size, size)
        self.merge = nn.Linear(2 * size, size)
        self.norm = nn.LayerNorm(size, eps=1e-12)

    def pool(self, ctx: torch.Tensor, sub: torch.Tensor, sub_mask: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bh,bnkh->bnk", self.attend(ctx), sub).masked_fill(~sub_mask, NEG)
        return torch.einsum("bnk,bnkh->bnh", scores.softmax(-1), sub)

    def forward(self, ctx, sub, sub_mask):
        pooled = self.pool(ctx, sub, sub_mask)
        return self.norm(self.merge(torch.cat([pooled, ctx[:, None].expand_as(pooled)], -1)))


class ColumnScorer(nn.Module):
    """Per column: attend over the question from the column, then MLP([column; attended question]) -> ``out``."""

    def __init__(self, col_size: int, q_size: int, hidden: int, out: int, dropout: float):
        super().__init__()
        self.col, self.q = nn.Linear(col_size, hidden), nn.Linear(q_size, hidden)
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, out))

    def forward(self, cols: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        c, k = self.col(cols), self.q(q)
        att = torch.einsum("bnh,bth->bnt", c, k).masked_fill(~q_mask[:, None], NEG).softmax(-1)
        return self.mlp(torch.cat([c, att @ k], -1))


class ValueSpanScorer(nn.Module):
    """Start and end logits of a condition value over question tokens, conditioned on the column and operator."""

    def __init__(self, col_size: int, q_size: int, hidden: int, n_ops: int):
        super().__init__()
        self.col = nn.Linear(col_size + n_ops, hidden)
        self.start, self.end = nn.Linear(q_size, hidden), nn.Linear(q_size, hidden)

    def forward(self, cols, op_probs, q, q_mask):
        c = self.col(torch.cat([cols, op_probs], -1))
        start = torch.einsum("bnh,bth->bnt", c, self.start(q)).masked_fill(~q_mask[:, None], NEG)
        end = torch.einsum("bnh,bth->bnt", c, self.end(q)).masked_fill(~q_mask[:, None], NEG)
        return start, end


class Nl2SqlHead(nn.Module):
    """All SQLova sub-modules over the encoder's question-token and column-token vectors."""

    def __init__(self, config: SdcupConfig):
        super().__init__()
        c = config
        i_s, h_s, dr = c.hidden_size * c.num_target_layers, c.head_hidden_size, c.head_dropout
        self.qk, self.hk = c.question_knowledge_dim, c.header_knowledge_dim
        lstm = dict(num_layers=c.head_lstm_layers, dropout=dr if c.head_lstm_layers > 1 else 0.0)
        self.question_lstm = BiLSTM(i_s, h_s // 2, **lstm)
        self.column_lstm = BiLSTM(i_s, h_s // 2, **lstm)
        self.column_encoder = ColumnEncoder(i_s)
        self.lstm_pool = nn.Linear(i_s, h_s // 2 * 2)
        q_size, col_size, ctx_size = i_s + h_s // 2 * 2 + self.qk, i_s + h_s // 2 * 2 + self.hk, i_s + h_s // 2 * 2
        self.dropout = nn.Dropout(dr)

        def mlp(out: int) -> nn.Module:
            return nn.Sequential(nn.Linear(ctx_size, h_s), nn.Tanh(), nn.Dropout(dr), nn.Linear(h_s, out))

        self.slen = mlp(c.max_select_columns)
        self.cco = mlp(len(CONN_OPS))
        self.wn = mlp(c.max_conditions + 1)
        self.sc = ColumnScorer(col_size, q_size, h_s, 1, dr)
        self.sa = ColumnScorer(col_size, q_size, h_s, len(AGG_OPS), dr)
        self.wc = ColumnScorer(col_size, q_size, h_s, 1, dr)
        self.wo = ColumnScorer(col_size, q_size, h_s, len(COND_OPS), dr)
        self.wv = ValueSpanScorer(col_size, q_size, h_s, len(COND_OPS))

    def forward(self, hidden, batch) -> dict[str, torch.Tensor]:
        q_mask, col_mask = batch["question_mask"], batch["column_mask"]
        sub_mask = batch["column_token_mask"]
        q = gather_tokens(hidden, batch["question_index"])  # [B, T, H]
        b, n, k = batch["column_index"].shape
        sub = gather_tokens(hidden, batch["column_index"].view(b, n * k)).view(b, n, k, -1)
        ctx = q[:, 0]  # the first question token, not [CLS] (errata 4.2)
        lstm_q = self.question_lstm(q) * q_mask[..., None]
        lstm_sub = self.column_lstm(sub.view(b * n, k, -1)).view(b, n, k, -1)
        att = torch.einsum("bh,bnkh->bnk", self.lstm_pool(ctx), lstm_sub).masked_fill(~sub_mask, NEG).softmax(-1)
        lstm_cols = torch.einsum("bnk,bnkh->bnh", att, lstm_sub)
        cols = self.column_encoder(ctx, sub, sub_mask)
        q_feat = F.one_hot(batch["question_knowledge"].clamp(0, self.qk - 1), self.qk).to(q.dtype)
        h_feat = F.one_hot(batch["header_knowledge"].clamp(0, self.hk - 1), self.hk).to(q.dtype)
        q_all = self.dropout(torch.cat([q, lstm_q, q_feat], -1))
        h_all = self.dropout(torch.cat([cols, lstm_cols, h_feat], -1))
        ctx_all = torch.cat([ctx, lstm_q[:, 0]], -1)
        col_fill = ~col_mask
        wo = self.wo(h_all, q_all, q_mask)
        wv_start, wv_end = self.wv(h_all, wo.softmax(-1), q_all, q_mask)
        return {
            "slen": self.slen(ctx_all),
            "sc": self.sc(h_all, q_all, q_mask).squeeze(-1).masked_fill(col_fill, NEG),
            "sa": self.sa(h_all, q_all, q_mask),
            "cco": self.cco(ctx_all),
            "wn": self.wn(ctx_all),
            "wc": self.wc(h_all, q_all, q_mask).squeeze(-1).masked_fill(col_fill, NEG),
            "wo": wo,
            "wv_start": wv_start,
            "wv_end": wv_end,
        }


def _at_columns(logits: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Rows of ``logits`` [B, N, X] at gold ``columns`` [B, S] (-100 = none, read as column 0): [B, S, X]."""
    index = columns.clamp_min(0)[..., None].expand(-1, -1, logits.shape[-1])
    return logits.gather(1, index)


def _masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean CE over the ``valid`` rows of ``logits`` [..., X], 0 when none is valid. Computed over every row and
    masked, so neither the selection nor "is any valid" is a data-dependent decision under torch.compile."""
    per = F.cross_entropy(logits.float().flatten(0, -2), target.clamp_min(0).flatten(), reduction="none")
    weights = valid.flatten().float()
    return (per * weights).sum() / weights.sum().clamp_min(1.0)


def nl2sql_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], column_mask) -> tuple:
    """Sum of every sub-module's loss (CE for counts, ops, spans; BCE for the column sets), and each part.

    A part with no gold item in the batch (no condition, no value span) is 0 and adds nothing."""
    sel, agg, wc_gold = labels["sel"], labels["agg"], labels["cond_col"]
    n_sel = (sel != -100).sum(1)
    parts = {"slen": F.cross_entropy(logits["slen"].float(), (n_sel - 1).clamp_min(0))}
    parts["cco"] = F.cross_entropy(logits["cco"].float(), labels["conn"])
    parts["wn"] = F.cross_entropy(logits["wn"].float(), (wc_gold != -100).sum(1))
    for key, gold in (("sc", sel), ("wc", wc_gold)):
        valid = gold != -100
        # Multi-hot of the gold columns (a column named twice is still 1).
        hot = F.one_hot(gold.clamp_min(0), logits[key].shape[-1]) * valid[..., None]
        target = hot.amax(1).float() if gold.shape[1] else torch.zeros_like(logits[key], dtype=torch.float)
        per = F.binary_cross_entropy_with_logits(logits[key].float(), target, reduction="none")
        parts[key] = (per * column_mask).sum() / column_mask.sum()
    parts["sa"] = _masked_cross_entropy(_at_columns(logits["sa"], sel), agg, sel != -100)
    has_cond = wc_gold != -100
    parts["wo"] = _masked_cross_entropy(_at_columns(logits["wo"], wc_gold), labels["cond_op"], has_cond)
    for side in ("start", "end"):
        gold = labels[f"cond_{side}"]
        span = _at_columns(logits[f"wv_{side}"], wc_gold)
        parts[f"wv_{side}"] = _masked_cross_entropy(span, gold, has_cond & (gold != -100))
    total = sum(parts.values())
    return total, {k: v.detach() for k, v in parts.items()}


class SdcupForNL2SQL(SdcupPreTrainedModel):
    """The SDCUP encoder (``sdcup.*``) and the SQLova head (``head.*``); :func:`~alicemind.sdcup.decoding.decode`
    turns the logits into SQL, optionally execution-guided."""

    encoder_prefix = "sdcup."
    optional_keys = (r"^head\.",)

    def __init__(self, config: SdcupConfig):
        super().__init__(config)
        self.sdcup = SdcupEncoder(config)
        self.head = Nl2SqlHead(config)
        self.init_weights()

    def forward(self, input_ids, token_type_ids, labels: dict[str, torch.Tensor] | None = None, **batch: Any):
        """``batch`` holds the index/mask/knowledge tensors of
        :func:`~alicemind.sdcup.tokenization.collate_serialized`; ``labels`` the gold components."""
        k = self.config.num_target_layers
        enc = self.sdcup(input_ids, token_type_ids, output_hidden_states=k > 1)
        hidden = enc.last_hidden_state if k == 1 else torch.cat(enc.hidden_states[-k:], -1)
        logits = self.head(hidden, batch)
        if labels is None:
            return TaskOutput(None, logits)
        loss, parts = nl2sql_loss(logits, labels, batch["column_mask"].float())
        return TaskOutput(loss, logits, parts)
