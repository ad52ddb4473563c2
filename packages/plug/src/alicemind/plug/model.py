"""PLUG models: PALM's sofa-zh assembly (``alicemind.palm.model``) under PLUG's config, plus what scale needs.

Nothing here re-builds a layer: :class:`PlugForConditionalGeneration` *is* a
:class:`~alicemind.palm.PalmForConditionalGeneration` whose output projection and loss also accept the
vocabulary-sharded DTensor weights that :func:`~alicemind.plug.parallel.parallelize_plug` makes, and
:class:`PlugForSequenceClassification` is PALM's encoder with a classifier on the raw [CLS] state (sofa's
``PlugNLU`` path, whose pooler is unused).
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import loss_parallel

from alicemind.core.layers import ClassificationHead
from alicemind.core.modeling import LoadedCheckpoint
from alicemind.palm.model import PalmForConditionalGeneration, PalmModel, Seq2SeqOutput
from alicemind.plug.config import PlugConfig


def _loss_parallel_active() -> bool:
    # torch 2.13 has no public way to ask whether loss_parallel() is on: its only public name is the context
    # manager, and the state it toggles is this private handler table (torch/distributed/tensor/parallel/loss.py,
    # _enable_custom_loss_ops). Entering loss_parallel() again unconditionally is not an option either: its exit
    # pops the handlers, switching the caller's context off before their backward.
    handlers = getattr(DTensor._op_dispatcher, "_custom_op_handlers", {})
    return torch.ops.aten.nll_loss_forward.default in handlers


def _read_plug_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
    from alicemind.plug.convert import read_checkpoint

    return read_checkpoint(path, config_class=cls.config_class, **config_overrides)


class PlugForConditionalGeneration(PalmForConditionalGeneration):
    """PLUG NLG: PALM's encoder-decoder (same modules, same ``model.safetensors`` keys) with a PLUG config."""

    config_class = PlugConfig

    def __init__(self, config: PlugConfig):
        super().__init__(config)
        self._vocab_bias: DTensor | None = None
        self._init_if_last(PlugForConditionalGeneration)

    read_checkpoint = classmethod(_read_plug_checkpoint)

    def logits(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """Plain logits (PALM's) or, when the word embeddings are vocabulary-sharded, logits sharded the same way.

        The padded rows beyond ``real_vocab_size`` get a -inf bias sharded like the table: no rank gathers the
        vocabulary. Keep the result sharded for :func:`torch.distributed.tensor.parallel.loss_parallel`, or call
        ``.full_tensor()`` for the whole row.
        """
        weight = self.output_embeddings.weight
        if not isinstance(weight, DTensor):
            return super().logits(decoder_output)
        mesh = weight.device_mesh
        if self._vocab_bias is None or self._vocab_bias.device_mesh != mesh:
            bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
            real = self.config.real_vocab_size
            if real is not None:
                bias[real:] = float("-inf")
            self._vocab_bias = distribute_tensor(bias, mesh, [Shard(0)])
        x = DTensor.from_local(decoder_output, mesh, [Replicate()], run_check=False)
        return F.linear(x, weight, self._vocab_bias)

    def token_loss(self, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """PALM's mean token cross-entropy (in at least fp32; float64 stays float64), and on vocabulary-sharded
        logits the vocabulary-parallel one: no rank gathers a row of logits. Run the backward inside
        ``loss_parallel()`` too, since its backward ops are sharded only there."""
        labels = labels.masked_fill(labels == self.config.pad_token_id, -100)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        # Entering loss_parallel again inside the caller's would switch it off on exit, before their backward.
        enter = isinstance(logits, DTensor) and not _loss_parallel_active()
        with loss_parallel() if enter else nullcontext():
            return F.cross_entropy(
                logits.flatten(0, 1).to(dtype), labels.flatten(), ignore_index=-100, label_smoothing=label_smoothing
            )

    def decode_step(self, decoder_input_ids: torch.Tensor, cache) -> torch.Tensor:
        """Full-vocabulary logits on every rank, so every rank picks the same next token."""
        logits = super().decode_step(decoder_input_ids, cache)
        return logits.full_tensor() if isinstance(logits, DTensor) else logits


class PlugForSequenceClassification(PalmModel):
    """PLUG NLU (sofa ``PlugNLU``/``BertForClassification``): PALM's encoder, dropout + linear on the raw [CLS].

    The decoder is not built. Module names: ``embeddings``, ``encoder``, ``classifier.classifiers.0``.
    """

    config_class = PlugConfig
    # A generation checkpoint has no classifier; its decoder is not used here (see read_checkpoint).
    optional_keys = (r"^classifier\.",)

    def __init__(self, config: PlugConfig, num_labels: int | None = None):
        # PalmModel builds a decoder; an encoder-only copy of the config makes it an empty stack.
        super().__init__(dataclasses.replace(config, dec_hidden_layers=0))
        self.config = config
        del self.decoder
        labels = num_labels or int(config.extra.get("num_labels", 2))
        self.classifier = ClassificationHead(config.hidden_size, labels, config.hidden_dropout_prob)
        self._init_if_last(PlugForSequenceClassification)

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        loaded = _read_plug_checkpoint(cls, path, **config_overrides)
        unused = tuple(sorted({k for k in loaded.state_dict if k.startswith("decoder.")}))
        if unused:
            loaded.ignore_unexpected = tuple(loaded.ignore_unexpected) + (r"^decoder\.",)
        return loaded

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> Seq2SeqOutput:
        """Class logits ``[B, num_labels]``; with ``labels`` the mean cross-entropy."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(hidden[:, 0])[0]
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return Seq2SeqOutput(loss, logits, hidden)
