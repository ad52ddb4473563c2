"""``veco evaluate`` and ``veco translate`` with ``--compile`` (a tracing-only backend, so the test stays cheap)
print exactly what they print without it."""

from __future__ import annotations

import contextlib
import io
import json

import torch
import veco_releases as rel
from veco_spm import train_spm
from veco_testing import tiny_config

from alicemind.core.cli import main
from alicemind.veco import VecoModel, VecoTokenizer

COMPILE = ["--compile", "--compile-backend", "aot_eager"]


def _run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_evaluate_retrieval_with_compile_equals_eager(tmp_path):
    spm_file = train_spm(tmp_path / "spm", vocab_size=200)
    tok = VecoTokenizer(spm_file)
    torch.manual_seed(0)
    VecoModel(tiny_config(vocab_size=len(tok), max_position_embeddings=130)).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    data = tmp_path / "tatoeba"
    data.mkdir()
    src = ["the cat sees us", "a dog runs far away from the house", "лиса", "敏捷的棕色狐狸"]
    (data / "xx-en.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(src, reversed(src))), encoding="utf-8")
    results = []
    for extra in ([], COMPILE):
        out = tmp_path / f"t{len(extra)}.json"
        code, _, err = _run("veco", "evaluate", "--recipe", "tatoeba", f"data_dir={data}", f"model={tmp_path / 'base'}",
                            "languages=[xx]", "layer=1", "--output", str(out), "--no-progress", *extra)  # fmt: skip
        assert code == 0, err
        results.append(json.loads(out.read_text()))
    assert results[0] == results[1] and "accuracy" in results[0]["xx"]
    assert "compiled forward for a new input shape" in err


def test_translate_with_compile_writes_the_eager_text(tmp_path):
    spm_file = train_spm(tmp_path / "spm", vocab_size=300)
    lines = VecoTokenizer(spm_file).dictionary_text().splitlines() + [f"{t} 1" for t in rel.LANGS]
    folder = rel.write_fairseq_folder(tmp_path / "veco-large", state=rel.fairseq_state_dict(4 + len(lines) + 1),
                                      lines=lines, spm_model=spm_file)  # fmt: skip
    (tmp_path / "in.txt").write_text("the quick fox\nüber straße und mehr\nлиса\n", encoding="utf-8")
    texts = []
    for extra in ([], COMPILE):
        out = tmp_path / f"out{len(extra)}.txt"
        code, _, err = _run("veco", "translate", "--model", str(folder), "--input", str(tmp_path / "in.txt"),
                            "--output", str(out), "generation.max_new_tokens=4", *extra)  # fmt: skip
        assert code == 0, err
        texts.append(out.read_text(encoding="utf-8"))
    assert texts[0] == texts[1] and len(texts[0].splitlines()) == 3
    assert "compiled encode for a new input shape" in err and "compiled decode_step" in err
