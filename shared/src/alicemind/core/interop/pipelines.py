"""transformers pipelines for the tasks transformers 5 removed: ``pipeline("alicemind-summarization" |
"alicemind-question-answering", model=folder)``.

transformers 5 removed its ``summarization`` and ``question-answering`` pipelines ("use text-generation with a
chat model"), and refuses those task names before looking at its registry. This registers pipelines under our
own names through the public ``PIPELINE_REGISTRY.register_pipeline``:

- summarization: text in, ``generate`` (core.generation) on an ``AutoModelForSeq2SeqLM`` model,
  ``[{"summary_text": ...}]`` out, as the removed pipeline returned;
- question answering: a question and a context in, an ``AutoModelForQuestionAnswering`` model's start/end logits,
  ``{"answer", "score", "start", "end"}`` out (character offsets into the context), as the removed pipeline
  returned. One window per question (the context truncated), the best span of at most ``max_answer_len`` pieces
  with start <= end inside the context: the rule of our own QA prediction (StructBERT's ``predict``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from alicemind.core.interop.spec import NoHeadError, UnknownModelTypeError, spec_for_folder
from alicemind.core.metrics import best_span

SUMMARIZATION_TASK = "alicemind-summarization"
QUESTION_ANSWERING_TASK = "alicemind-question-answering"
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


class _QuestionAnsweringModel:
    """``AutoModelForQuestionAnswering`` that refuses a folder without a QA head.

    transformers would load, say, a classifier's folder with a freshly initialised QA head (a warning only) and
    answer at random; the pipeline loads through this class and raises :class:`NoHeadError` instead (not one of
    the errors ``pipeline()`` catches to try its next class, so the user sees it as it is).
    """

    @classmethod
    def from_pretrained(cls, folder: str, **kwargs: Any):
        """The folder's QA model; :class:`NoHeadError` when the folder holds no QA head."""
        try:  # our family's spec names its tasks: a family without a QA head is told as such
            spec_for_folder(folder).model_class("question-answering")
        except (UnknownModelTypeError, FileNotFoundError):
            pass  # another model_type, or a hub name: transformers decides
        model, info = AutoModelForQuestionAnswering.from_pretrained(folder, output_loading_info=True, **kwargs)
        if info["missing_keys"]:
            missing = sorted(info["missing_keys"])
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise NoHeadError(
                f"{folder}: the saved model has no question-answering head ({shown} not in the folder); "
                "save a QA model (e.g. StructBertForQuestionAnswering) there"
            )
        return model


class QuestionAnsweringPipeline(Pipeline):
    """Extractive QA: ``qa(question=..., context=...)`` -> ``{"answer", "score", "start", "end"}``.

    ``score`` is p(start) * p(end), each a softmax over the context's pieces (as the removed transformers pipeline
    scored); ``start``/``end`` are character offsets into the context, ``context[start:end] == answer``.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __call__(self, inputs: Any = None, *, question: Any = None, context: Any = None, **kwargs: Any):
        """Answer one ``{"question", "context"}`` (a dict out) or a list of them (a list out)."""
        if question is not None or context is not None:
            if question is None or context is None:
                raise TypeError(f"{QUESTION_ANSWERING_TASK} needs both question= and context=")
            if isinstance(question, str) != isinstance(context, str):
                raise TypeError("question and context must both be strings or both lists")
            if isinstance(question, str):
                inputs = {"question": question, "context": context}
            else:
                inputs = [{"question": q, "context": c} for q, c in zip(question, context, strict=True)]
        if inputs is None:
            raise TypeError(f"{QUESTION_ANSWERING_TASK} needs question= and context= (or {{question, context}})")
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, max_answer_len: int | None = None, max_seq_len: int | None = None, **kwargs):
        if kwargs:
            raise TypeError(
                f"{QUESTION_ANSWERING_TASK} does not take {sorted(kwargs)}; it takes ['max_answer_len', 'max_seq_len']"
            )
        preprocess = {} if max_seq_len is None else {"max_seq_len": max_seq_len}
        postprocess = {} if max_answer_len is None else {"max_answer_len": max_answer_len}
        return preprocess, {}, postprocess

    def preprocess(self, inputs: dict[str, str], max_seq_len: int | None = None) -> dict[str, Any]:
        if not isinstance(inputs, dict) or not {"question", "context"} <= set(inputs):
            raise TypeError(f"{QUESTION_ANSWERING_TASK} takes {{'question': ..., 'context': ...}}, not {inputs!r}")
        if max_seq_len is None:  # the model's positions bound the window (a tokenizer may allow more)
            max_seq_len = min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        # The same encoding as our QA prediction: [CLS] question [SEP] context [SEP], the context truncated.
        enc = self.tokenizer(
            inputs["question"],
            inputs["context"],
            truncation="only_second",
            max_length=max_seq_len,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping")[0].tolist()
        types = enc.sequence_ids(0)  # 1 on context pieces (None on special tokens)
        in_context = [t == 1 and b > a for t, (a, b) in zip(types, offsets)]
        return {"model_inputs": dict(enc), "offsets": offsets, "in_context": in_context, "context": inputs["context"]}

    def _forward(self, inputs: dict[str, Any]) -> dict[str, Any]:
        out = self.model(**inputs.pop("model_inputs"))
        return {**inputs, "start_logits": out.start_logits[0], "end_logits": out.end_logits[0]}

    def postprocess(self, outputs: dict[str, Any], max_answer_len: int = 30) -> dict[str, Any]:
        allowed = torch.tensor(outputs["in_context"])
        start, end = outputs["start_logits"].float(), outputs["end_logits"].float()
        span = best_span(start.numpy(), end.numpy(), allowed.numpy(), max_answer_len)  # our predict path's rule
        if span is None:  # an empty context (or one truncated away): no span to give
            return {"answer": "", "score": 0.0, "start": 0, "end": 0}
        i, j, _ = span
        start, end = start.masked_fill(~allowed, float("-inf")), end.masked_fill(~allowed, float("-inf"))
        score = start.softmax(-1)[i] * end.softmax(-1)[j]
        begin, finish = outputs["offsets"][i][0], outputs["offsets"][j][1]
        return {"answer": outputs["context"][begin:finish], "score": float(score), "start": begin, "end": finish}


def register_pipelines() -> None:
    """Register :data:`SUMMARIZATION_TASK` and :data:`QUESTION_ANSWERING_TASK` once (a repeated call changes
    nothing)."""
    tasks = PIPELINE_REGISTRY.get_supported_tasks()
    if SUMMARIZATION_TASK not in tasks:
        PIPELINE_REGISTRY.register_pipeline(
            SUMMARIZATION_TASK, pipeline_class=Seq2SeqSummarizationPipeline, pt_model=AutoModelForSeq2SeqLM
        )
    if QUESTION_ANSWERING_TASK not in tasks:
        PIPELINE_REGISTRY.register_pipeline(
            QUESTION_ANSWERING_TASK, pipeline_class=QuestionAnsweringPipeline, pt_model=_QuestionAnsweringModel
        )
