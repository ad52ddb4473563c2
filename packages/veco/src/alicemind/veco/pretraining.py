"""VECO pre-training: masked LM plus cross-attention masked LM (CA-MLM) with the plug-in cross-attention.

For a pair (x, y), a translation pair or two adjacent sentences of one document, both sides are masked and the
loss is the paper's four terms (models-language.md 3.2):

    -log P(x | x^; theta_s) - log P(x | x^, y^; theta_s, theta_c) - log P(y | y^; theta_s) - log P(y | y^, x^; theta_s, theta_c)

The self-attention and feed-forward parameters theta_s are shared by all four; the cross-attention parameters
theta_c (one sub-layer per block, attending to the other side's final hidden states) only by the CA terms. For NLU
the cross-attention is unplugged (``VecoModel.from_pretrained`` drops it); for NLG the stack initialises both the
encoder (self-attention + FFN) and the decoder (self-attention + cross-attention + FFN): :func:`init_nlg_from_pretraining`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alicemind.core.data import DataCollatorWithPadding
from alicemind.core.layers import MaskedLMHead
from alicemind.veco.config import VecoConfig
from alicemind.veco.model import TaskOutput, VecoModel, VecoPreTrainedModel

LOSS_TERMS = ("mlm_x", "ca_mlm_x", "mlm_y", "ca_mlm_y")


class VecoForPreTraining(VecoPreTrainedModel):
    """The encoder with plug-in cross-attention and an MLM head tied to the word embeddings (``lm_head``)."""

    optional_keys = (r"^lm_head\.", r"\.cross_attn(_norm)?\.")

    def __init__(self, config: VecoConfig):
        super().__init__(config)
        self.roberta = VecoModel(config, add_pooling_layer=False, cross_attention=True)
        self.lm_head = MaskedLMHead(
            config.hidden_size, config.vocab_size, activation=config.hidden_act, layer_norm_eps=config.layer_norm_eps
        )
        self.init_weights()
        self.lm_head.tie_to(self.roberta.embeddings.word_embeddings)

    def _mlm(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Project only the masked positions: the vocabulary matmul dominates the cost otherwise.
        positions = labels != -100
        logits = self.lm_head(hidden[positions])
        target = labels[positions]
        loss = F.cross_entropy(logits.float(), target) if target.numel() else hidden.new_zeros(()).float()
        acc = (logits.argmax(-1) == target).float().mean() if target.numel() else loss.detach()
        return loss, acc

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        pair_input_ids: torch.Tensor | None = None,
        pair_labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pair_attention_mask: torch.Tensor | None = None,
    ) -> TaskOutput:
        """``input_ids``/``labels`` are masked x and its MLM targets (-100 where not predicted); with
        ``pair_input_ids``/``pair_labels`` (masked y) the loss is the sum of the four terms, else plain MLM."""
        pad = self.config.pad_token_id
        mask_x = attention_mask if attention_mask is not None else input_ids.ne(pad)
        h_x = self.roberta(input_ids, attention_mask=mask_x).last_hidden_state
        if labels is None:
            return TaskOutput(None, self.lm_head(h_x))
        loss_x, acc_x = self._mlm(h_x, labels)
        metrics = {"mlm_x": loss_x.detach(), "mlm_x_acc": acc_x}
        if pair_input_ids is None:
            return TaskOutput(loss_x, None, metrics=metrics)
        mask_y = pair_attention_mask if pair_attention_mask is not None else pair_input_ids.ne(pad)
        h_y = self.roberta(pair_input_ids, attention_mask=mask_y).last_hidden_state
        loss_y, acc_y = self._mlm(h_y, pair_labels)
        # CA-MLM: each side again, its cross-attention reading the other side's hidden states.
        c_x = self.roberta(input_ids, attention_mask=mask_x, cross_states=h_y, cross_mask=mask_y).last_hidden_state
        c_y = self.roberta(pair_input_ids, attention_mask=mask_y, cross_states=h_x, cross_mask=mask_x)
        loss_cx, acc_cx = self._mlm(c_x, labels)
        loss_cy, acc_cy = self._mlm(c_y.last_hidden_state, pair_labels)
        loss = loss_x + loss_cx + loss_y + loss_cy
        metrics.update(
            ca_mlm_x=loss_cx.detach(), ca_mlm_x_acc=acc_cx, mlm_y=loss_y.detach(), mlm_y_acc=acc_y,
            ca_mlm_y=loss_cy.detach(), ca_mlm_y_acc=acc_cy,
        )  # fmt: skip
        return TaskOutput(loss, None, metrics=metrics)


# -- data -----------------------------------------------------------------------------------------------------
@dataclass
class PretrainingDataConfig:
    max_length: int = 128  # tokens per side, <s> and </s> included
    mlm_probability: float = 0.15
    mask_ratio: float = 0.8  # of the chosen positions: <mask>; random_ratio: a random token; the rest unchanged
    random_ratio: float = 0.1


def pairs_from_documents(documents: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """Monolingual CA-MLM pairs: every two adjacent sentences of a document."""
    return [(doc[i], doc[i + 1]) for doc in documents for i in range(len(doc) - 1)]


def encode_pair_instances(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[dict]:
    """``{"input_ids", "pair_input_ids"}`` per pair: each side ``<s> tokens </s>``, truncated to ``max_length``."""
    xs = tokenizer([a for a, _ in pairs], truncation=True, max_length=max_length)["input_ids"]
    ys = tokenizer([b for _, b in pairs], truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": list(x), "pair_input_ids": list(y)} for x, y in zip(xs, ys) if len(x) > 2 and len(y) > 2]


class CaMlmCollator:
    """Pads a batch of pairs and masks both sides BERT-style (80% ``<mask>``, 10% random, 10% kept)."""

    def __init__(
        self, *, pad_token_id: int, mask_token_id: int, vocab_size: int, special_ids: Sequence[int],
        config: PretrainingDataConfig, seed: int = 0,
    ):  # fmt: skip
        self.pad = DataCollatorWithPadding(pad_token_id)
        self.mask_token_id, self.vocab_size = mask_token_id, vocab_size
        self.special_ids = torch.tensor(sorted(set(special_ids)))
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)

    def _mask(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, g = self.config, self.generator
        candidates = ~torch.isin(ids, self.special_ids)
        chosen = (torch.rand(ids.shape, generator=g) < c.mlm_probability) & candidates
        # At least one prediction per row, so no side is without a loss term.
        first = torch.where(candidates.any(1), candidates.float().argmax(1), 0)
        none = ~chosen.any(1) & candidates.any(1)
        chosen[none, first[none]] = True
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=g)
        masked = ids.clone()
        masked[chosen & (roll < c.mask_ratio)] = self.mask_token_id
        random_pos = chosen & (roll >= c.mask_ratio) & (roll < c.mask_ratio + c.random_ratio)
        masked[random_pos] = torch.randint(self.vocab_size, ids.shape, generator=g)[random_pos]
        return masked, labels

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.pad(features)
        batch.pop("attention_mask", None)  # the model derives both sides' masks from the pad id
        batch["input_ids"], batch["labels"] = self._mask(batch["input_ids"])
        batch["pair_input_ids"], batch["pair_labels"] = self._mask(batch["pair_input_ids"])
        return batch


def shuffle_pairs(pairs: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    out = list(pairs)
    random.Random(seed).shuffle(out)
    return out


# -- NLG initialisation from the pre-trained stack ------------------------------------------------------------
def init_nlg_from_pretraining(pretrained: VecoForPreTraining, *, decoder_layers: Sequence[int] | None = None):
    """A :class:`~alicemind.veco.seq2seq.VecoForConditionalGeneration` whose encoder is the pre-trained stack
    without cross-attention and whose decoder is the same stack's blocks ``decoder_layers`` (default: the top 6,
    as the fine-tune scripts keep) with their cross-attention; embeddings and positions initialise both sides."""
    from alicemind.veco.seq2seq import VecoForConditionalGeneration

    c = pretrained.config
    total = c.num_hidden_layers
    keep = list(decoder_layers) if decoder_layers is not None else list(range(max(0, total - 6), total))
    bad = [i for i in keep if not 0 <= i < total]
    if bad:
        raise ValueError(f"decoder layer {bad[0]} is past the pre-trained stack's {total} layers")
    config = VecoConfig.from_dict({**c.to_dict(), "is_encoder_decoder": True, "decoder_layers": len(keep)})
    model = VecoForConditionalGeneration(config)
    source = pretrained.roberta
    # The NLG embeddings have no token-type table (fairseq has none); everything else is copied strictly.
    embeddings = {k: v for k, v in source.embeddings.state_dict().items() if not k.startswith("token_type_")}
    model.encoder_embeddings.load_state_dict(embeddings)
    model.decoder_embeddings.position_embeddings.load_state_dict(source.embeddings.position_embeddings.state_dict())
    model.decoder_embeddings.norm.load_state_dict(source.embeddings.norm.state_dict())
    encoder_state = {k: v for k, v in source.encoder.state_dict().items() if ".cross_attn" not in k}
    model.encoder.load_state_dict(encoder_state)
    for new, old in enumerate(keep):
        model.decoder.layers[new].load_state_dict(source.encoder.layers[old].state_dict())
    return model
