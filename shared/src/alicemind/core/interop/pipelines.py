"""A transformers pipeline for our encoder-decoders: ``pipeline("alicemind-summarization", model=folder)``.

transformers 5 removed its ``summarization`` (and ``question-answering``) pipelines ("use text-generation with a
chat model"), and refuses those task names before looking at its registry. This registers a pipeline under our
own name through the public ``PIPELINE_REGISTRY.register_pipeline``: text in, ``generate`` (core.generation) on
an ``AutoModelForSeq2SeqLM`` model, ``[{"summary_text": ...}]`` out, as the removed pipeline returned.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoModelForSeq2SeqLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

SUMMARIZATION_TASK = "alicemind-summarization"
_GENERATION_ARGS = ("max_new_tokens", "num_beams", "min_length", "length_penalty", "no_repeat_ngram_size")


class Seq2SeqSummarizationPipeline(Pipeline):
    """Summarise (or otherwise rewrite) text with an encoder-decoder whose ``generate`` returns token ids."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(self, truncation: bool | None = None, **kwargs: Any):
        unknown = sorted(set(kwargs) - set(_GENERATION_ARGS))
        if unknown:
            raise TypeError(f"{SUMMARIZATION_TASK} does not take {unknown}; it takes {list(_GENERATION_ARGS)}")
        preprocess = {} if truncation is None else {"truncation": truncation}
        return preprocess, dict(kwargs), {}

    def preprocess(self, text: str, truncation: bool = True) -> dict[str, Any]:
        return self.tokenizer(text, return_tensors="pt", truncation=truncation)

    def _forward(self, inputs: dict[str, Any], **generate_kwargs: Any) -> dict[str, Any]:
        ids = self.model.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"], **generate_kwargs)
        return {"output_ids": ids}

    def postprocess(self, outputs: dict[str, Any]) -> list[dict[str, str]]:
        return [{"summary_text": self.tokenizer.decode(ids, skip_special_tokens=True)} for ids in outputs["output_ids"]]


def register_pipelines() -> None:
    """Register :data:`SUMMARIZATION_TASK` once (a repeated call changes nothing)."""
    if SUMMARIZATION_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(
            SUMMARIZATION_TASK, pipeline_class=Seq2SeqSummarizationPipeline, pt_model=AutoModelForSeq2SeqLM
        )
