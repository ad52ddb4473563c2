"""PALM's joint pre-training objective and its data pipeline.

A contiguous span of a document is split into a context (the first ~80%) and a target (the rest). The encoder
reads the context with BERT-style masking and is trained with masked language modelling (autoencoding); the
decoder generates the target left to right conditioned on the encoder (autoregression). Both losses are
reported separately. The original code released neither the instance builder nor the MLM part (reference
section 2.4); this is written from the paper's description.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from alicemind.core.data import DataCollatorWithPadding
from alicemind.core.layers import MaskedLMHead
from alicemind.core.training import RunIdentity
from alicemind.core.training.run_manifest import recipe_identity
from alicemind.palm.config import PalmConfig
from alicemind.palm.model import PalmForConditionalGeneration, Seq2SeqOutput

# Recipe keys that do not change the trained weights (evaluation, generation, published numbers), or that the Trainer
# records itself (training).
_NOT_IN_IDENTITY = ("training", "generation", "lang", "published", "data.valid", "data.eval_limit")


def run_identity(recipe: Mapping[str, Any], tokenizer: Any, files: Mapping[str, str | os.PathLike[str]]) -> RunIdentity:
    """What defines a PALM training run, for ``output_dir/run.json``: the recipe's result-affecting values, a
    content hash of each input file in ``files`` (name -> path) and of the tokenizer's vocabulary."""
    return recipe_identity(
        recipe, files=files, vocab=tokenizer.get_vocab(), exclude=_NOT_IN_IDENTITY, distributions=("alicemind-palm",)
    )


class PalmForPreTraining(PalmForConditionalGeneration):
    """PALM plus the encoder's masked-LM head (``mlm_head``, tied to the word embeddings).

    ``forward`` returns ``mlm_weight * mlm_loss + lm_loss`` and both parts in ``metrics``.
    """

    # The English release has no MLM head: it starts from random when loading that checkpoint.
    optional_keys = (r"^mlm_head\.",)

    def __init__(self, config: PalmConfig):
        super().__init__(config)
        self.mlm_head = MaskedLMHead(
            config.hidden_size, config.vocab_size, activation=config.hidden_act, layer_norm_eps=config.layer_norm_eps
        )
        self.mlm_head.tie_to(self.embeddings.word_embeddings)
        self._init_if_last(PalmForPreTraining)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        mlm_labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        mlm_weight: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> Seq2SeqOutput:
        """Decoder logits; with ``labels`` and/or ``mlm_labels`` (-100 = not a masked position) the losses."""
        out = super().forward(
            input_ids,
            attention_mask,
            decoder_input_ids,
            labels,
            token_type_ids=token_type_ids,
            label_smoothing=label_smoothing,
        )
        metrics: dict[str, torch.Tensor] = {}
        loss = out.loss
        if out.loss is not None:
            metrics["lm_loss"] = out.loss.detach()
        if mlm_labels is not None:
            selected = mlm_labels != -100
            # Only masked positions go through the vocabulary projection.
            mlm_logits = self.mlm_head(out.encoder_hidden_state[selected])
            mlm_loss = F.cross_entropy(mlm_logits.float(), mlm_labels[selected])
            metrics["mlm_loss"] = mlm_loss.detach()
            loss = mlm_weight * mlm_loss if loss is None else loss + mlm_weight * mlm_loss
        return Seq2SeqOutput(loss, out.logits, out.encoder_hidden_state, metrics)


@dataclass
class PretrainingDataConfig:
    """How documents become (context, target) instances."""

    max_source_length: int = 128  # encoder tokens, BOS/EOS included
    max_target_length: int = 64  # decoder tokens, BOS/EOS included
    context_ratio: float = 0.8
    min_target_tokens: int = 2
    mlm_probability: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 < self.context_ratio < 1.0:
            raise ValueError(f"context_ratio must lie in (0, 1), got {self.context_ratio}")
        if self.max_source_length < 3 or self.max_target_length < 3:
            raise ValueError("max_source_length and max_target_length must leave room for BOS, EOS and a token")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must lie in (0, 1), got {self.mlm_probability}")


def build_instances(
    documents: Iterable[Sequence[int]],
    data: PretrainingDataConfig,
    *,
    bos_token_id: int,
    eos_token_id: int,
    rng: random.Random | None = None,
) -> list[dict[str, list[int]]]:
    """Cut token-id documents into consecutive spans and split each into context and target.

    Each span holds up to ``(max_source_length - 2) / context_ratio`` tokens; its first ``context_ratio`` part
    (at least one token) becomes ``source_ids`` and the rest (capped at ``max_target_length - 2``) ``target_ids``,
    both wrapped in BOS/EOS. A document's first span starts at a random offset below the span length, so epochs
    built with different seeds see different cuts. Spans whose target would be shorter than
    ``min_target_tokens`` are skipped.
    """
    rng = rng or random.Random(0)
    ctx_max, tgt_max = data.max_source_length - 2, data.max_target_length - 2
    span = min(int(ctx_max / data.context_ratio), ctx_max + tgt_max)
    instances = []
    for doc in documents:
        doc = list(doc)
        start = rng.randrange(max(1, min(span, len(doc) - span + 1))) if len(doc) > span else 0
        while start < len(doc):
            piece = doc[start : start + span]
            start += span
            cut = min(ctx_max, max(1, round(len(piece) * data.context_ratio)))
            context, target = piece[:cut], piece[cut : cut + tgt_max]
            if len(target) < data.min_target_tokens:
                continue
            instances.append(
                {
                    "source_ids": [bos_token_id, *context, eos_token_id],
                    "target_ids": [bos_token_id, *target, eos_token_id],
                }
            )
    return instances


class PretrainingCollator:
    """Pads instances and masks the encoder input (dynamic masking: a fresh draw per batch).

    Of the chosen ``mlm_probability`` positions (never special tokens or padding) 80% become ``mask_token_id``,
    10% a random id and 10% stay. Returns ``input_ids``, ``attention_mask``, ``mlm_labels``,
    ``decoder_input_ids`` (target without its last token) and ``labels`` (target without its first token).
    """

    def __init__(
        self,
        *,
        pad_token_id: int,
        mask_token_id: int,
        vocab_size: int,
        special_ids: Iterable[int],
        mlm_probability: float = 0.15,
        generator: torch.Generator | None = None,
    ):
        self.pad = DataCollatorWithPadding(pad_token_id)
        self.mask_token_id, self.vocab_size = mask_token_id, vocab_size
        self.special_ids = torch.tensor(sorted(set(special_ids) | {pad_token_id}), dtype=torch.long)
        self.mlm_probability = mlm_probability
        self.generator = generator

    def __call__(self, instances: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        features = [
            {
                "input_ids": inst["source_ids"],
                "decoder_input_ids": inst["target_ids"][:-1],
                "labels": inst["target_ids"][1:],
            }
            for inst in instances
        ]
        batch = self.pad(features)
        batch["input_ids"], batch["mlm_labels"] = self.mask(batch["input_ids"], batch["attention_mask"].bool())
        return batch

    def mask(self, input_ids: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT masking of ``input_ids``; returns (masked ids, labels with -100 where nothing was masked)."""
        g = self.generator
        maskable = real & ~torch.isin(input_ids, self.special_ids)
        chosen = (torch.rand(input_ids.shape, generator=g) < self.mlm_probability) & maskable
        # Rows too short to draw a position by chance still contribute one masked token.
        empty = ~chosen.any(dim=1) & maskable.any(dim=1)
        if bool(empty.any()):
            first = torch.where(maskable, torch.rand(input_ids.shape, generator=g), -1.0).argmax(dim=1)
            chosen[empty.nonzero().squeeze(1), first[empty]] = True
        labels = input_ids.masked_fill(~chosen, -100)
        draw = torch.rand(input_ids.shape, generator=g)
        masked = input_ids.clone()
        masked[chosen & (draw < 0.8)] = self.mask_token_id
        randomise = chosen & (draw >= 0.8) & (draw < 0.9)
        masked[randomise] = torch.randint(self.vocab_size, (int(randomise.sum()),), generator=g)
        return masked, labels
