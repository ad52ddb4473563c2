"""The offline stdlib-docstring topic task, now in core (:mod:`alicemind.core.data.topic_task`); kept importable
here for existing callers."""

from alicemind.core.data.topic_task import TOPICS, build_topic_task, topic_sentences

__all__ = ["TOPICS", "build_topic_task", "topic_sentences"]
