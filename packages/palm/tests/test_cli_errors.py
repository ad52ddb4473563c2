"""``alicemind palm``: atomic convert and one-line user errors (exit 2, no traceback)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from palm_releases import sofa_state_dict, write_sofa_folder

from alicemind.core.cli import main


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_convert_over_an_old_folder_leaves_no_stale_vocab(tmp_path, capsys):
    write_sofa_folder(tmp_path / "sofa", sofa_state_dict())
    (tmp_path / "sofa" / "vocab.txt").unlink()  # this release comes without a vocab
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "vocab.txt").write_text("[PAD]\nstale\n")
    (dst / "tokenizer_config.json").write_text("{}")
    assert main(["palm", "convert", str(tmp_path / "sofa"), str(dst)]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors"]


def test_convert_into_a_full_disk_keeps_the_old_folder(tmp_path, capsys, monkeypatch):
    write_sofa_folder(tmp_path / "sofa", sofa_state_dict())
    dst = tmp_path / "out"
    assert main(["palm", "convert", str(tmp_path / "sofa"), str(dst)]) == 0
    before = {p.name: p.read_bytes() for p in dst.iterdir()}

    def full_disk(tensors, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("alicemind.core.checkpoint.save_safetensors", full_disk)
    assert main(["palm", "convert", str(tmp_path / "sofa"), str(dst)]) == 2
    assert _one_error_line(capsys).endswith("No space left on device (free some space or write elsewhere)")
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "sofa"]


def test_convert_of_a_sofa_folder_whose_config_is_not_json(tmp_path, capsys):
    write_sofa_folder(tmp_path / "sofa", sofa_state_dict())
    (tmp_path / "sofa" / "config.json").write_text("{not json")
    assert main(["palm", "convert", str(tmp_path / "sofa"), str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "sofa/config.json is not valid JSON" in line and "line 1, column 2" in line
    assert not (tmp_path / "out").exists()


@pytest.fixture
def texts(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("天气\n", encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    return good, latin1, empty


def test_evaluate_refuses_non_utf8_and_empty_files(texts, capsys):
    good, latin1, empty = texts
    assert main(["palm", "evaluate", "--predictions", str(latin1), "--references", str(good)]) == 2
    assert _one_error_line(capsys).endswith("latin1.txt is not UTF-8 text (invalid continuation byte at byte 3); "
                                            "convert it to UTF-8")  # fmt: skip
    assert main(["palm", "evaluate", "--predictions", str(empty), "--references", str(good)]) == 2
    assert _one_error_line(capsys).endswith("empty.txt is empty: expected one text per line")


def test_generate_input_and_checkpoint_errors_are_one_line(texts, tmp_path, capsys, monkeypatch):
    good, latin1, _ = texts
    assert main(["palm", "generate", "--model", "palm.ch.base", "--input", str(latin1)]) == 2
    assert "latin1.txt is not UTF-8 text" in _one_error_line(capsys)  # found before any model is loaded
    corrupt = tmp_path / "corrupt"
    write_sofa_folder(corrupt, sofa_state_dict())
    (corrupt / "palm_model.pt").write_bytes(b"not a checkpoint")
    assert main(["palm", "generate", "--model", str(corrupt), "--input", str(good)]) == 2
    assert "palm_model.pt" in _one_error_line(capsys)
    # A registered name that is not cached, offline: the hub's error, in one line.
    monkeypatch.setenv("ALICEMIND_OFFLINE", "1")
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    assert main(["palm", "generate", "--model", "palm.ch.base", "--input", str(good)]) == 2
    assert "offline" in _one_error_line(capsys)


def test_finetune_of_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    write_sofa_folder(corrupt, sofa_state_dict())
    (corrupt / "palm_model.pt").write_bytes(b"garbage")
    train = tmp_path / "train.tsv"
    train.write_text("天气\t晴\n", encoding="utf-8")
    argv = ["palm", "finetune", "--recipe", "finetune-weather", f"model={corrupt}", f"data.train={train}"]
    assert main(argv) == 2
    assert "palm_model.pt" in _one_error_line(capsys)


# One bad value per kind of key across the PALM recipes: refused in one line before any model or data is read.
SWEEP = [
    ("pretrain", "pretrain", "training.lr=abc", "'training.lr' must be a number >= 0, got 'abc'"),  # float
    ("pretrain", "pretrain", "training.max_steps=1.5", "'training.max_steps' must be an integer >= 1"),  # int
    ("pretrain", "pretrain", "training.per_device_batch_size=0", "must be an integer >= 1 (or null), got 0"),
    ("pretrain", "pretrain", "data.mlm_probability=1.5", "'data.mlm_probability' must be a number in [0, 1]"),
    ("pretrain", "pretrain", "data.context_ratio=2", "'data.context_ratio' must be a number in [0, 1], got 2"),
    ("pretrain", "pretrain", "data.max_source_length=0", "'data.max_source_length' must be an integer >= 1"),
    ("pretrain", "pretrain", "mlm_weight=-1", "'mlm_weight' must be a number >= 0, got -1"),
    ("pretrain", "pretrain", "model.preset=[a]", "'model.preset' must be a string, got ['a']"),  # str
    ("finetune", "finetune-cnndm", "lang=fr", "'lang' must be one of 'zh', 'en', got 'fr'"),  # choice
    ("finetune", "finetune-cnndm", "optim.style=adam", "'optim.style' must be one of null, 'presumm-noam'"),
    ("finetune", "finetune-cnndm", "optim.betas=[a, b]", "'optim.betas' must be a list of numbers"),  # list
    ("finetune", "finetune-cnndm", "optim.warmup_encoder=soon", "'optim.warmup_encoder' must be an integer"),
    ("finetune", "finetune-cnndm", "label_smoothing=1.1", "'label_smoothing' must be a number in [0, 1]"),
    ("finetune", "finetune-weather", "training.num_epochs=two", "'training.num_epochs' must be an integer >= 1"),
    ("finetune", "finetune-weather", "+training.progress_bar=sometimes", "must be true or false"),  # bool
    ("finetune", "finetune-weather", "training.precision=fp64", "'training.precision' must be one of 'auto'"),
    ("finetune", "finetune-weather", "data.limit=all", "'data.limit' must be an integer >= 0, got 'all'"),
    ("finetune", "finetune-weather", "generation.num_beams=0", "'generation.num_beams' must be an integer >= 1"),
    ("finetune", "finetune-weather", "generation.length_penalty_style=x", "must be one of 'gnmt', 'plain'"),
    ("finetune", "finetune-weather", "+generation.top_p=0", "'generation.top_p' must be a number in (0, 1]"),
    ("generate", "generate", "batch_size=0", "'batch_size' must be an integer >= 1, got 0"),
    ("generate", "generate", "+generation.early_stopping=3", "'generation.early_stopping' must be true or false"),
    ("reproduce", "reproduce", "overrides=[training.lr=abc]", "'training.lr' must be a number >= 0, got 'abc'"),
]


@pytest.mark.parametrize(("verb", "recipe", "override", "message"), SWEEP)
def test_bad_recipe_values_are_one_line_with_status_2(texts, capsys, verb, recipe, override, message):
    extra = ["--model", "palm.ch.base", "--input", str(texts[0])] if verb == "generate" else []
    assert main(["palm", verb, *extra, "--recipe", recipe, override]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("alicemind: error: recipe ") and message in line, line


@pytest.mark.parametrize(("verb", "recipe"), [("finetune", "finetune-dureader-qg"), ("generate", "generate")])
def test_recipe_verb_help_lists_real_keys_with_defaults(capsys, verb, recipe):
    assert main(["palm", verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "training.lr=2e-5" in out and "optim.lr=" not in out
    assert f"with the values of recipe '{recipe}'" in out and "  generation.num_beams = 5" in out


def test_subprocess_user_error_has_no_traceback(texts):
    good, latin1, _ = texts
    cmd = [sys.executable, "-m", "alicemind.core.cli", "palm", "evaluate", "--predictions", str(latin1),
           "--references", str(good)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"alicemind palm evaluate: error: {latin1} is not UTF-8 text (invalid continuation byte at byte 3); "
        "convert it to UTF-8"
    ]


def test_download_offline_in_process_leaves_the_environment_as_it_was(tmp_path, capsys, monkeypatch):
    # `--offline` used to set ALICEMIND_OFFLINE for the rest of the process, so later in-process callers
    # (another test, a notebook) could no longer download.
    monkeypatch.delenv("ALICEMIND_OFFLINE", raising=False)
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    assert main(["palm", "download", "palm.ch.base", "--offline"]) == 2
    assert "offline" in _one_error_line(capsys)
    assert "ALICEMIND_OFFLINE" not in os.environ
