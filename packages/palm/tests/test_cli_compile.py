"""``alicemind palm generate --compile`` runs the model through optimize_for_inference and writes the same text;
``--int8-weights`` decodes with int8 linear layers."""

from __future__ import annotations

import torch

import alicemind.core.ops as core_ops
import alicemind.core.ops.int8 as core_int8
from alicemind.core.cli import main
from alicemind.palm import PalmForConditionalGeneration

CHARS = "天气今明后晴雨多云风大小温度高低北京上海"


def test_generate_with_compile_writes_the_eager_outputs(tmp_path, make_config, monkeypatch, capsys):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS]
    config = make_config("sofa-zh", vocab_size=len(vocab), pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    PalmForConditionalGeneration(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (tmp_path / "in.txt").write_text("今天天气\n北京明天多云风大\n", encoding="utf-8")
    compiled = []
    optimize = core_ops.optimize_for_inference

    def traced(model, **kwargs):  # the real switch, with a tracing-only backend so the test stays fast
        fast = optimize(model, backend="aot_eager", **kwargs)
        compiled.append(fast)
        return fast

    outputs = {}
    for flag in ([], ["--compile"]):
        if flag:
            monkeypatch.setattr(core_ops, "optimize_for_inference", traced)
        out = tmp_path / f"gen{len(flag)}.txt"
        args = ["palm", "generate", "--model", str(folder), "--input", str(tmp_path / "in.txt"), "--output",
                str(out), "--no-progress", *flag, "generation.max_new_tokens=4"]  # fmt: skip
        assert main(args) == 0
        outputs[bool(flag)] = out.read_text(encoding="utf-8")
    assert outputs[True] == outputs[False] and len(outputs[False].splitlines()) == 2
    assert len(compiled) == 1 and {name for name, _ in compiled[0].compile_seconds} == {"encode", "decode_step"}
    assert "compiled decode_step for a new input shape in" in capsys.readouterr().err

    swapped = []
    real = core_int8.quantize_linear_weights
    monkeypatch.setattr(core_int8, "quantize_linear_weights", lambda model: swapped.append(real(model)))
    args = ["palm", "generate", "--model", str(folder), "--input", str(tmp_path / "in.txt"), "--output",
            str(tmp_path / "int8.txt"), "--no-progress", "--int8-weights", "generation.max_new_tokens=4"]  # fmt: skip
    assert main(args) == 0
    assert swapped and swapped[0] > 0
    assert len((tmp_path / "int8.txt").read_text(encoding="utf-8").splitlines()) == 2
