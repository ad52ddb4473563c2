"""``plug generate --compile`` (a tracing-only backend, so the test stays cheap) writes exactly the eager text and
reports the compiled encode and decode steps on stderr; under tensor parallelism it refuses the flag."""

from __future__ import annotations

from plug_testing import released_state_dict, tiny_config, write_release

from alicemind.core.cli import main

COMPILE = ["--compile", "--compile-backend", "aot_eager"]


def _converted_model(tmp_path):
    config = tiny_config(initializer_range=0.3)
    folder = write_release(tmp_path, config, released_state_dict(config, seed=5))
    assert main(["plug", "convert", str(folder), str(tmp_path / "m"), "--no-progress"]) == 0
    (tmp_path / "in.txt").write_text("一丁\n七万丈一\n", encoding="utf-8")
    return tmp_path / "m"


def test_generate_with_compile_writes_the_eager_text(tmp_path, capsys):
    model = _converted_model(tmp_path)
    for mode in (["--greedy"], ["--greedy", "--num-beams", "2"], []):  # greedy, beam, sampling (fixed seed)
        argv = ["plug", "generate", "--model", str(model), "--input", str(tmp_path / "in.txt"), "--max-new-tokens",
                "5", *mode]  # fmt: skip
        capsys.readouterr()
        assert main(argv) == 0
        eager = capsys.readouterr().out
        assert main([*argv, *COMPILE]) == 0
        compiled = capsys.readouterr()
        assert compiled.out == eager and len(eager.splitlines()) == 2, mode
        assert "compiled encode for a new input shape" in compiled.err
        assert "compiled decode_step for a new input shape" in compiled.err


def test_generate_refuses_compile_under_tensor_parallelism(tmp_path, capsys, monkeypatch):
    model = _converted_model(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = ["plug", "generate", "--model", str(model), "--input", str(tmp_path / "in.txt"), *COMPILE]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--compile runs in one process only" in err and len(err.splitlines()) == 1
