"""Atomic model folders (alicemind.core.io) and config.json errors."""

from __future__ import annotations

import dataclasses
import errno
import threading

import pytest
import torch
from torch import nn

from alicemind.core.config import ConfigError, ModelConfig, UnknownPresetError
from alicemind.core.io import (
    FolderNotReplaceableError,
    atomic_folder,
    register_saved_files,
    register_tokenizer_files,
    save_folder,
)
from alicemind.core.modeling import WEIGHTS_NAME, PreTrainedModel
from alicemind.core.tokenization import WordPieceTokenizer


@dataclasses.dataclass
class TinyConfig(ModelConfig):
    model_type = "tiny-atomic"
    width: int = 3
    scale: float = 1.0
    tags: list[int] | None = None


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.proj = nn.Linear(config.width, config.width)


def _model(width: int, fill: float) -> TinyModel:
    model = TinyModel(TinyConfig(width=width))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(fill)
    return model


def _tokenizer(folder) -> WordPieceTokenizer:
    folder.mkdir(exist_ok=True)
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\n", encoding="utf-8")
    return WordPieceTokenizer.from_vocab_file(folder / "vocab.txt")


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_save_is_renamed_into_place_and_leaves_no_staging(tmp_path):
    _model(3, 0.5).save_pretrained(tmp_path / "m")
    assert _names(tmp_path / "m") == ["config.json", WEIGHTS_NAME]
    assert _names(tmp_path) == ["m"]  # no staging or old folder left beside it
    assert TinyModel.from_pretrained(tmp_path / "m").proj.weight.flatten().tolist() == [0.5] * 9


def test_a_failed_save_leaves_the_old_folder_untouched(tmp_path, monkeypatch):
    target = tmp_path / "m"
    _model(3, 0.5).save_pretrained(target)
    before = (target / WEIGHTS_NAME).read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(target / WEIGHTS_NAME))

    monkeypatch.setattr("alicemind.core.checkpoint.save_safetensors", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _model(5, 0.25).save_pretrained(target)
    assert (target / WEIGHTS_NAME).read_bytes() == before and _names(tmp_path) == ["m"]


def test_concurrent_saves_into_one_folder_never_mix(tmp_path):
    target = tmp_path / "m"
    for trial in range(16):
        models = [_model(3, 1.0 + trial), _model(5, -1.0 - trial)]
        barrier = threading.Barrier(2)
        errors = []

        def save(model, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                model.save_pretrained(target)
            except Exception as err:  # surfaced below; a thread would swallow it
                errors.append(err)

        threads = [threading.Thread(target=save, args=(m,)) for m in models]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        loaded = TinyModel.from_pretrained(target)  # strict: config and weights of one save
        width = loaded.config.width
        expected = 1.0 + trial if width == 3 else -1.0 - trial
        assert width in (3, 5) and loaded.proj.weight.shape == (width, width)
        assert torch.all(loaded.proj.weight == expected)
        assert _names(tmp_path) == ["m"]


def test_overwrite_replaces_whole_but_keeps_the_other_components_files(tmp_path):
    target = tmp_path / "m"
    _model(3, 0.5).save_pretrained(target)
    _tokenizer(tmp_path / "vocab").save_pretrained(target)  # a tokenizer save keeps the model files
    assert {"config.json", WEIGHTS_NAME, "vocab.txt", "tokenizer_config.json"} <= set(_names(target))
    _model(5, 0.25).save_pretrained(target)  # a model save keeps the tokenizer files, replaces its own
    assert TinyModel.from_pretrained(target).config.width == 5 and (target / "vocab.txt").is_file()
    with save_folder(target) as staging:  # one save of both: nothing old survives
        _model(3, 2.0).save_pretrained(staging)
    assert _names(target) == ["config.json", WEIGHTS_NAME]
    assert _names(tmp_path) == ["m", "vocab"]


def test_a_folder_that_is_not_a_model_folder_is_refused_unless_asked(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "train.tsv").write_text("keep me\n")
    with pytest.raises(FolderNotReplaceableError, match=r"data is not a model folder \(it holds train.tsv\)"):
        _model(3, 0.5).save_pretrained(target)
    assert _names(target) == ["train.tsv"] and _names(tmp_path) == ["data"]
    _model(3, 0.5).save_pretrained(target, overwrite=True)
    assert _names(target) == ["config.json", WEIGHTS_NAME]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="over a file"):
        _model(3, 0.5).save_pretrained(tmp_path / "file", overwrite=True)


def test_registered_run_files_may_be_replaced(tmp_path):
    target = tmp_path / "m"
    _model(3, 0.5).save_pretrained(target)
    (target / "atomic-test-run.json").write_text("{}")
    with pytest.raises(FolderNotReplaceableError):
        _model(3, 0.5).save_pretrained(target)
    register_saved_files("atomic-test-run.json")
    _model(3, 0.5).save_pretrained(target)
    assert _names(target) == ["config.json", WEIGHTS_NAME]


def test_a_model_save_keeps_registered_tokenizer_files(tmp_path):
    # A family's tokenizer may write more than core's files (LatticeBERT's lexicon.txt); saving the tokenizer
    # first and the model second must not drop them.
    target = tmp_path / "m"
    _tokenizer(tmp_path / "vocab").save_pretrained(target)
    (target / "atomic-test-lexicon.txt").write_text("word\n")
    register_tokenizer_files("atomic-test-lexicon.txt")
    _model(3, 0.5).save_pretrained(target)
    assert (target / "atomic-test-lexicon.txt").read_text() == "word\n" and (target / "vocab.txt").is_file()
    assert TinyModel.from_pretrained(target).config.width == 3


def test_an_error_inside_atomic_folder_writes_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "m") as staging:
        (staging / "config.json").write_text("{}")
        raise RuntimeError("interrupted")
    assert _names(tmp_path) == []


def test_config_json_errors_name_the_file_the_field_and_the_value(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"width": 3,\n "scale": }')
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON: Expecting value at line 2, column 11"):
        TinyConfig.from_json_file(bad)
    bad.write_text('{"width": "768"}')
    with pytest.raises(ConfigError, match=r"config.json: TinyConfig field 'width': expected an integer, got '768'"):
        TinyConfig.from_json_file(bad)
    with pytest.raises(ConfigError, match=r"field 'tags': expected a list of integers or null, got \[1, 'x'\]"):
        TinyConfig.from_dict({"tags": [1, "x"]})
    config = TinyConfig.from_dict({"width": 4.0, "scale": 2})  # integral floats become ints; ints are numbers
    assert (config.width, type(config.width), config.scale) == (4, int, 2)
    with pytest.raises(UnknownPresetError, match="unknown tiny-atomic preset 'bogus'") as info:
        TinyConfig.from_preset("bogus")
    assert isinstance(info.value, KeyError) and str(info.value).startswith("unknown")
