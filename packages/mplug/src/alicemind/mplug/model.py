"""mPLUG task models over core: CLIP ViT, BERT text encoder, skip-connected fusion, BERT decoder.

State-dict keys are the release's after its own remap (``visual_encoder.``, ``text_encoder.``, ``fusion_encoder.``,
``text_decoder.bert.``/``.cls.``, ``*_m`` momentum copies) with core's sub-layer names inside; ``convert.py`` reads
the released ``.pth`` files under each task's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.layers import VisionTransformer
from alicemind.core.modeling import LoadedCheckpoint, PreTrainedModel, init_bert_weights
from alicemind.mplug.config import MPlugConfig
from alicemind.mplug.modules import (
    BertStack,
    ConditionedDecoder,
    DecoderSteps,
    FusionEncoder,
    TextDecoder,
    add_momentum_copies,
    momentum_update,
    sequence_loss,
)


@dataclass
class MPlugOutput:
    """Total loss (when targets are given), per-objective losses as ``metrics`` (the Trainer logs them), logits."""

    loss: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] | None = None
    logits: torch.Tensor | None = None


class MPlugPreTrainedModel(PreTrainedModel):
    """Builds the parts a task uses (``parts``) and its momentum copies (``momentum_parts``)."""

    config_class = MPlugConfig
    parts: ClassVar[tuple[str, ...]] = ("visual", "text", "fusion", "decoder")
    momentum_parts: ClassVar[tuple[str, ...]] = ()
    # The release task whose key rules ``from_pretrained`` applies to a released .pth (see convert.TASK_RULES).
    release_task: ClassVar[str] = "vqa"
    # Tied to the word embeddings, so a safetensors file stores them once under the embedding's name.
    optional_keys = (r"^text_decoder(_m)?\.cls\.decoder\.weight$", r"^mlm_head\.decoder\.weight$")

    def __init__(self, config: MPlugConfig):
        super().__init__(config)
        config.validate()
        self.visual_encoder = VisionTransformer(config.vision_config())
        if self.visual_encoder.proj is not None:
            self.visual_encoder.proj = None  # mPLUG uses ln_post tokens, never CLIP's projection
        if config.vision_width != config.hidden_size:  # large: ViT-L width 1024 -> text width 768
            self.visn_fc = nn.Linear(config.vision_width, config.hidden_size)
            self.visn_layer_norm = nn.LayerNorm(config.hidden_size, eps=1e-12)
            self.visn_dropout = nn.Dropout(0.1)
        if "text" in self.parts:
            self.text_encoder = BertStack(config, config.text_encoder_layers)
        if "fusion" in self.parts:
            self.fusion_encoder = FusionEncoder(config)
        if "decoder" in self.parts:
            self.text_decoder = TextDecoder(config)
        self.build_heads()
        self.init_weights()
        if self.momentum_parts and config.distill:
            add_momentum_copies(self, list(self.momentum_module_names()))

    def build_heads(self) -> None:
        """Task-specific modules (projections, ITM head, queues); none by default."""

    def momentum_module_names(self) -> list[str]:
        names = [n for n in self.momentum_parts if hasattr(self, n)]
        if hasattr(self, "visn_fc") and "visual_encoder" in names:
            names += ["visn_fc", "visn_layer_norm"]
        return names

    def init_weights(self) -> None:
        """BERT init on the text side; the ViT keeps CLIP's init (a release replaces it anyway)."""
        for name, module in self.named_children():
            if name != "visual_encoder":
                init_bert_weights(module, self.config.initializer_range)
        if hasattr(self, "text_decoder"):
            self.text_decoder.cls.tie_to(self.text_decoder.bert.embeddings.word_embeddings)

    @classmethod
    def read_checkpoint(cls, path: Path, **config_overrides: Any) -> LoadedCheckpoint:
        from alicemind.mplug.convert import read_mplug_checkpoint

        return read_mplug_checkpoint(cls, path, **config_overrides)

    # -- compiled inference -------------------------------------------------------------------------------------
    def optimize_parts_for_inference(self, compile_part) -> None:
        """Compile the encoders, the fusion and the decoder steps, each with ``compile_part`` (what
        ``alicemind.core.ops.optimize_for_inference(model)`` hands over). The compiled parts run wherever this
        model runs without autograd in eval mode (generation, evaluation); training still runs the eager ones."""
        compiled = {name: compile_part(getattr(self, name)) for name in self._inference_parts if hasattr(self, name)}
        if hasattr(self, "text_decoder"):
            compiled["decoder_steps"] = compile_part(DecoderSteps(self.text_decoder))
        self.__dict__["_compiled_parts"] = compiled

    _inference_parts: ClassVar[tuple[str, ...]] = ("visual_encoder", "text_encoder", "fusion_encoder")

    @property
    def parts_optimized_for_inference(self) -> bool:
        return bool(self.__dict__.get("_compiled_parts"))

    def _compiled(self, name: str):
        """The compiled part ``name`` when there is one and no gradient is wanted, else None."""
        if self.training or torch.is_grad_enabled():
            return None
        return self.__dict__.get("_compiled_parts", {}).get(name)

    def _part(self, name: str):
        """The compiled module ``name`` where it may run (see :meth:`_compiled`), else the module itself."""
        compiled = self._compiled(name)
        return compiled if compiled is not None else getattr(self, name)

    def decoding_adapter(self, states: torch.Tensor, mask: torch.Tensor) -> ConditionedDecoder:
        """The decoder conditioned on ``states`` as core's generation engine drives it."""
        steps = self._compiled("decoder_steps")
        return ConditionedDecoder(steps if steps is not None else DecoderSteps(self.text_decoder), states, mask)

    # -- shared encoders ------------------------------------------------------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor, *, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Image states at the text width ``[B, 1 + patches, H]`` and their all-ones mask."""
        suffix = "_m" if momentum else ""
        states = self._part("visual_encoder" + suffix)(pixel_values, skip_last_layer=True)
        if hasattr(self, "visn_fc"):
            fc, norm = getattr(self, "visn_fc" + suffix), getattr(self, "visn_layer_norm" + suffix)
            states = self.visn_dropout(norm(fc(states)))
        return states, torch.ones(states.shape[:2], dtype=torch.long, device=states.device)

    def encode_text(self, input_ids, attention_mask, *, momentum: bool = False) -> torch.Tensor:
        return self._part("text_encoder" + ("_m" if momentum else ""))(input_ids, attention_mask)

    def fuse(self, pixel_values, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused ``[image; text]`` states and mask: what the VQA and grounding decoders attend to."""
        image, image_mask = self.encode_image(pixel_values)
        text = self.encode_text(input_ids, attention_mask)
        image, text = self._part("fusion_encoder")(text, attention_mask, image, image_mask)
        return torch.cat([image, text], 1), torch.cat([image_mask, attention_mask.long()], 1)

    def momentum_update(self) -> None:
        """One EMA step of every momentum copy (call after each optimizer step)."""
        if self.momentum_parts and self.config.distill:
            momentum_update(self, self.momentum_module_names(), self.config.momentum)

    def _generate(self, states, mask, config: GenerationConfig, prompt: torch.Tensor | None = None):
        adapter = self.decoding_adapter(states, mask)
        return generate(adapter, adapter.placeholder_source(), None, config, decoder_input_ids=prompt)

    def default_generation(self, **overrides: Any) -> GenerationConfig:
        c = self.config
        fields = dict(
            decoder_start_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
            num_beams=5, length_penalty=0.6, length_penalty_style="gnmt", max_new_tokens=25,
        )  # fmt: skip
        fields.update(overrides)
        return GenerationConfig(**fields)


class MPlugForCaption(MPlugPreTrainedModel):
    """Captioning: the decoder cross-attends to the image states only (text encoder and fusion unused, as
    released); targets are ``[CLS] caption [SEP]``. No momentum copies (errata §7)."""

    parts = ("visual", "decoder")
    release_task = "caption"

    def forward(self, pixel_values, input_ids, attention_mask, *, prompt_length: int = 1) -> MPlugOutput:
        """Mean token cross-entropy of the caption after ``prompt_length`` leading tokens ([CLS])."""
        image, image_mask = self.encode_image(pixel_values)
        logits = self.text_decoder(input_ids, attention_mask, image, image_mask)
        per_row = sequence_loss(logits, input_ids, attention_mask, prompt_length)
        tokens = attention_mask[:, prompt_length:].sum().clamp(min=1)
        loss = per_row.sum() / tokens
        return MPlugOutput(loss, {"caption": loss.detach()}, logits)

    @torch.no_grad()
    def generate(self, pixel_values, *, prompt: torch.Tensor | None = None, **generation) -> torch.Tensor:
        """Token ids ``[B, T]`` (start token first); defaults beam 5, GNMT alpha 0.6, up to 25 tokens."""
        image, mask = self.encode_image(pixel_values)
        return self._generate(image, mask, self.default_generation(**generation), prompt).sequences

    def scst_loss(self, pixel_values, references, decode, *, num_beams: int = 5, **generation) -> MPlugOutput:
        """Self-critical training as ``caption_mplug_scst.py``: ``num_beams`` beam captions per image, reward =
        CIDEr-D against ``references`` (one list of strings per image), baseline = the mean reward of the image's
        beams, loss = advantage x the caption's token NLL divided by its length. ``decode`` maps ids to text."""
        from alicemind.mplug.evaluation import cider_d_scores

        image, mask = self.encode_image(pixel_values)
        config = self.default_generation(num_beams=num_beams, num_return_sequences=num_beams, **generation)
        with torch.no_grad():
            sequences = self._generate(image.detach(), mask, config).sequences
        texts = decode(sequences)
        refs = [r for r in references for _ in range(num_beams)]
        reward = torch.tensor(cider_d_scores(texts, refs), device=image.device)
        advantage = reward - reward.view(-1, num_beams).mean(1).repeat_interleave(num_beams)
        eos = (sequences == self.config.eos_token_id).long()
        seen_before = eos.cumsum(1) - eos  # tokens after the first EOS are padding
        seq_mask = (seen_before == 0).long()
        states, states_mask = image.repeat_interleave(num_beams, 0), mask.repeat_interleave(num_beams, 0)
        nll = sequence_loss(self.text_decoder(sequences, seq_mask, states, states_mask), sequences, seq_mask)
        loss = (advantage * nll / seq_mask[:, 1:].sum(1).clamp(min=1)).mean()
        return MPlugOutput(loss, {"scst": loss.detach(), "reward": reward.mean()})


class MPlugForVQA(MPlugPreTrainedModel):
    """VQA as answer generation: the decoder reads the fused ``[image; question]``; one row per distinct answer,
    each weighted by its answer score. The momentum copies are built and updated as released, but the release
    never passes ``alpha`` to its decoder, so its distillation term is zero (errata §7): so is ours."""

    momentum_parts = ("visual_encoder", "text_encoder", "fusion_encoder", "text_decoder")
    release_task = "vqa"

    def forward(
        self, pixel_values, question_ids, question_mask, answer_ids, answer_mask, answer_weights, answers_per_question
    ) -> MPlugOutput:
        """``answers_per_question`` ``[B]`` says how many consecutive answer rows belong to each question."""
        states, mask = self.fuse(pixel_values, question_ids, question_mask)
        repeat = torch.as_tensor(answers_per_question, device=states.device)
        # The answer rows are the repeated size: stating it keeps the shape static (no data-dependent size).
        rows = answer_ids.shape[0]
        states = states.repeat_interleave(repeat, 0, output_size=rows)
        mask = mask.repeat_interleave(repeat, 0, output_size=rows)
        logits = self.text_decoder(answer_ids, answer_mask, states, mask)
        per_row = sequence_loss(logits, answer_ids, answer_mask)
        loss = (answer_weights * per_row).sum() / pixel_values.shape[0]
        return MPlugOutput(loss, {"vqa": loss.detach()}, logits)

    @torch.no_grad()
    def generate(self, pixel_values, question_ids, question_mask, **generation) -> torch.Tensor:
        """Free answer generation (the release's evaluation): beam 5, up to 10 tokens by default."""
        states, mask = self.fuse(pixel_values, question_ids, question_mask)
        config = self.default_generation(**{"max_new_tokens": 10, "min_length": 1, **generation})
        return self._generate(states, mask, config).sequences

    @torch.no_grad()
    def rank_answers(self, pixel_values, question_ids, question_mask, answer_ids, answer_mask) -> torch.Tensor:
        """Index of the best candidate answer per question ``[B]``: the candidate list ``[A, T]`` is scored by
        the decoder's summed log-likelihood (the release's ``rank_answer``, over all candidates)."""
        states, mask = self.fuse(pixel_values, question_ids, question_mask)
        b, a = states.shape[0], answer_ids.shape[0]
        states, mask = states.repeat_interleave(a, 0), mask.repeat_interleave(a, 0)
        ids, amask = answer_ids.repeat(b, 1), answer_mask.repeat(b, 1)
        nll = sequence_loss(self.text_decoder(ids, amask, states, mask), ids, amask)
        return nll.view(b, a).argmin(1)
