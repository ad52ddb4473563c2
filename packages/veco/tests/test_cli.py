"""``alicemind veco`` verbs: convert, download (offline), translate, list, and one-line errors (exit 2)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
import veco_releases as rel
from veco_spm import train_spm

from alicemind.core.cli import main
from alicemind.veco import VecoForConditionalGeneration, VecoTokenizer


def _run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A fairseq folder whose dict.txt is its sentencepiece model's pieces plus three language tags."""
    root = tmp_path_factory.mktemp("cli")
    spm_file = train_spm(root / "spm", vocab_size=300)
    lines = VecoTokenizer(spm_file).dictionary_text().splitlines() + [f"{t} 1" for t in rel.LANGS]
    state = rel.fairseq_state_dict(4 + len(lines) + 1)
    return rel.write_fairseq_folder(root / "veco-large", state=state, lines=lines, spm_model=spm_file), state


def test_convert_the_fairseq_release(release, tmp_path):
    folder, state = release
    code, out, _ = _run("veco", "convert", str(folder), str(tmp_path / "ours"), "--keep-decoder-layers", "20,21,22,23")
    assert code == 0 and "fairseq-veco" in out and "VecoForConditionalGeneration" in out
    model = VecoForConditionalGeneration.from_pretrained(tmp_path / "ours")
    assert model.config.decoder_layers == 4
    assert torch.equal(
        model.decoder.layers[0].self_attn.q_proj.weight, state["decoder.layers.20.self_attn.q_proj.weight"]
    )
    tok = VecoTokenizer.from_pretrained(tmp_path / "ours")
    assert tok.has_dictionary and tok.lang_tags == rel.LANGS and len(tok) == model.config.vocab_size


def test_translate_writes_one_line_per_source(release, tmp_path):
    folder, _ = release
    (tmp_path / "in.txt").write_text("the quick fox\nüber straße\nлиса\n", encoding="utf-8")
    code, _, err = _run("veco", "translate", "--model", str(folder), "--input", str(tmp_path / "in.txt"),
                        "--output", str(tmp_path / "out.txt"), "generation.max_new_tokens=5")  # fmt: skip
    assert code == 0, err
    assert len((tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()) == 3


def test_convert_errors_are_one_line_exit_2(release, tmp_path):
    folder, _ = release
    code, _, err = _run("veco", "convert", str(folder), str(tmp_path / "x"), "--keep-decoder-layers", "22,23,30")
    assert code == 2 and "keep_decoder_layers index 30 is past the file's 24 decoder layers" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _run("veco", "convert", str(tmp_path / "missing"), str(tmp_path / "y"))
    assert code == 2 and "no checkpoint at" in err


def test_translate_unknown_language_is_one_line(release, tmp_path):
    folder, _ = release
    (tmp_path / "in.txt").write_text("a\n", encoding="utf-8")
    code, _, err = _run("veco", "translate", "--model", str(folder), "--input", str(tmp_path / "in.txt"), "tgt_lang=xx")
    assert code == 2 and "no language tag '[xx]'" in err and len(err.strip().splitlines()) == 1


def test_download_offline_without_cache_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    code, _, err = _run("veco", "download", "veco.large.nlg", "--offline")
    assert code == 2 and "veco.large.nlg" in err and "offline" in err.lower(), err
    assert len(err.strip().splitlines()) == 1


def test_list_shows_the_family():
    code, out, _ = _run("list")
    assert code == 0
    section = out[out.index("veco") :]
    assert "veco.large" in section and "veco.large.nlg" in section and "wmt14-en-de" in section and "xnli" in section


def test_reproduce_needs_data_dir_and_checks_overrides_first(tmp_path):
    code, _, err = _run("veco", "reproduce", "--recipe", "reproduce-xtreme")
    assert code == 2 and "data_dir" in err
    code, _, err = _run("veco", "reproduce", "--recipe", "reproduce-xtreme", f"data_dir={tmp_path}",
                        "overrides=[training.nonsense=1]")  # fmt: skip
    assert code == 2 and "nonsense" in err


def test_recipes_state_their_source():
    from importlib.resources import files

    recipes = sorted(p for p in files("alicemind.veco").joinpath("recipes").iterdir() if p.name.endswith(".yaml"))
    assert len(recipes) == 14
    for path in recipes:
        assert path.read_text(encoding="utf-8").startswith("# Source:"), path.name


def test_translate_with_our_converted_folder_ignores_the_release_options(release, tmp_path):
    folder, _ = release
    assert _run("veco", "convert", str(folder), str(tmp_path / "ours"))[0] == 0
    (tmp_path / "in.txt").write_text("the quick fox\n", encoding="utf-8")
    code, out, err = _run("veco", "translate", "--model", str(tmp_path / "ours"), "--input", str(tmp_path / "in.txt"),
                          "generation.max_new_tokens=4", "generation.num_beams=1")  # fmt: skip
    assert code == 0, err  # the recipe's keep_decoder_layers apply to the fairseq layout, not to our folder
    direct = VecoForConditionalGeneration.from_pretrained(tmp_path / "ours")
    assert direct.config.decoder_layers == 6 and len(out.splitlines()) == 1
