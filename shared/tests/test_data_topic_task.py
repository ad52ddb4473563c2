"""The offline stdlib-docstring topic task (moved from alicemind-childtuning into core)."""

from __future__ import annotations

from pathlib import Path

from alicemind.core.data.topic_task import TOPICS, build_topic_task, topic_sentences


def _fake_stdlib(root: Path) -> Path:
    """One module per topic with enough plain-prose docstring sentences."""
    for t, entries in enumerate(TOPICS.values()):
        entry = entries[0]
        if entry.endswith(".py"):
            path = root / entry
        else:  # a package: its modules are read
            (root / entry).mkdir()
            path = root / entry / "__init__.py"
        body = " ".join(f"This sentence number {i} talks about topic {chr(65 + t)} in plain words." for i in range(6))
        shared = "Every topic repeats this one shared sentence about nothing at all."
        path.write_text(f'"""{body} {shared}"""\n', encoding="utf-8")
    return root


def test_balanced_disjoint_split_and_cross_topic_duplicates_dropped(tmp_path: Path) -> None:
    root = _fake_stdlib(tmp_path)
    per_topic = topic_sentences(root)
    assert list(per_topic) == list(TOPICS)
    assert all(len(s) == 6 for s in per_topic.values())  # the shared sentence is under every topic: dropped
    train, evaluation, labels = build_topic_task(2, 3, seed=1, stdlib_dir=root)
    assert labels == list(TOPICS)
    assert len(train) == 2 * len(TOPICS) and len(evaluation) == 3 * len(TOPICS)
    assert sorted(y for _, y in train) == sorted(list(range(len(TOPICS))) * 2)
    assert not {s for s, _ in train} & {s for s, _ in evaluation}
    for sentence, label in train + evaluation:
        assert f"topic {chr(65 + label)} " in sentence
    assert build_topic_task(2, 3, seed=1, stdlib_dir=root) == (train, evaluation, labels)


def test_childtuning_name_is_the_core_builder() -> None:
    import importlib.util

    if importlib.util.find_spec("alicemind.childtuning") is None:  # core alone: nothing to compare
        assert build_topic_task.__module__ == "alicemind.core.data.topic_task"
        return
    from alicemind.childtuning.repro_data import build_topic_task as old

    assert old is build_topic_task
