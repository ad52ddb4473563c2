"""The checkpoint registry, cache location and offline switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from alicemind.core.hub import (
    CheckpointEntry,
    cache_dir,
    get_checkpoint,
    is_offline,
    list_checkpoints,
    register_checkpoint,
    unregister_checkpoint,
)

OSS = "https://alice-open.oss-cn-zhangjiakou.aliyuncs.com"


@pytest.fixture
def entries():
    made = [
        CheckpointEntry(name="regtest.structbert.en.large", family="regtest-structbert", url=f"{OSS}/StructBERT/en_model",
                        filename="en_model", format="structbert-state-dict", license="Apache-2.0",
                        config={"hidden_size": 1024, "num_hidden_layers": 24}),
        CheckpointEntry(name="regtest.structbert.ch.large", family="regtest-structbert", url=f"{OSS}/StructBERT/ch_model",
                        filename="ch_model", format="structbert-state-dict"),
        CheckpointEntry(name="regtest.palm.ch.base", family="regtest-palm", url=f"{OSS}/PALM/chinese-palm-base.tar.gz",
                        filename="chinese-palm-base.tar.gz", format="sofa-dir-tar", archive=True),
    ]  # fmt: skip
    for entry in made:
        register_checkpoint(entry)
    yield made
    for entry in made:
        unregister_checkpoint(entry.name)


def test_register_get_and_list(entries):
    assert get_checkpoint("regtest.structbert.en.large") is entries[0]
    assert get_checkpoint("regtest.structbert.en.large").config == {"hidden_size": 1024, "num_hidden_layers": 24}
    assert [e.name for e in list_checkpoints("regtest-structbert")] == [
        "regtest.structbert.ch.large",
        "regtest.structbert.en.large",
    ]
    assert {e.name for e in entries} <= {e.name for e in list_checkpoints()}
    assert list_checkpoints("no-such-family") == []


def test_unknown_name_suggests_close_matches(entries):
    with pytest.raises(
        KeyError, match=r"unknown checkpoint 'regtest.structbert.en.larg'; did you mean regtest.structbert.en.large"
    ):
        get_checkpoint("regtest.structbert.en.larg")
    with pytest.raises(KeyError, match="checkpoint\\(s\\) are registered"):
        get_checkpoint("zzzzzzzzzzzzzzzzzzzz")


def test_duplicate_registration(entries):
    register_checkpoint(entries[0])  # same entry again: fine
    changed = CheckpointEntry(name=entries[0].name, family="other", url=None, filename="x", format="hf-dir")
    with pytest.raises(ValueError, match="already registered"):
        register_checkpoint(changed)
    register_checkpoint(changed, overwrite=True)
    assert get_checkpoint(entries[0].name).family == "other"


def test_entry_validation():
    with pytest.raises(ValueError, match="bare file name"):
        CheckpointEntry(name="a", family="f", url=None, filename="../x", format="hf-dir")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        CheckpointEntry(name="a", family="f", url=None, filename="x", format="hf-dir", sha256="ABC")
    with pytest.raises(KeyError):
        unregister_checkpoint("never-registered")


def test_cache_dir_and_offline_switch(monkeypatch, tmp_path):
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("ALICEMIND_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == Path(tmp_path / "home" / ".cache" / "alicemind")
    monkeypatch.delenv("ALICEMIND_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not is_offline()
    for value, expected in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)]:
        monkeypatch.setenv("ALICEMIND_OFFLINE", value)
        assert is_offline() is expected, value
    monkeypatch.delenv("ALICEMIND_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert is_offline()
