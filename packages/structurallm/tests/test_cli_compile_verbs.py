"""``structurallm evaluate`` and ``predict`` with ``--compile`` (a tracing-only backend, so the test stays cheap)
print exactly what they print without it."""

from __future__ import annotations

import pytest
import torch
from structurallm_testing import write_funsd_split

from alicemind.core.cli import main
from alicemind.structurallm import StructuralLMConfig, StructuralLMModel

COMPILE = ["--compile", "--compile-backend", "aot_eager"]
SHORT = ["max_seq_length=32", "doc_stride=8", "training.max_steps=2", "training.per_device_batch_size=8",
         "training.precision=fp32", "training.save_every=0", "training.num_epochs=null"]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_evaluate_and_predict_with_compile_print_the_eager_output(tmp_path, tokenizer, capsys):
    data = tmp_path / "data" / "funsd"
    write_funsd_split(data / "training_data" / "annotations", 4, seed=0)
    write_funsd_split(data / "testing_data" / "annotations", 3, seed=1)
    base = tmp_path / "base"
    StructuralLMModel(StructuralLMConfig.from_preset("structurallm.test")).save_pretrained(base)
    tokenizer.save_pretrained(base)
    run = tmp_path / "run"
    args = ["--recipe", "funsd", f"data_dir={data}", f"model={base}", f"output_dir={run}", *SHORT]
    assert main(["structurallm", "finetune", "--no-progress", *args]) == 0
    page = data / "testing_data" / "annotations" / "page_001.json"
    verbs = {
        "evaluate": ["structurallm", "evaluate", "--recipe", "funsd", f"data_dir={data}", "--model", str(run / "model"),
                     "max_seq_length=32", "doc_stride=8"],
        "predict": ["structurallm", "predict", str(page), "--model", str(run / "model"), "--max-seq-length", "32"],
    }  # fmt: skip
    for argv in verbs.values():
        capsys.readouterr()
        assert main(argv) == 0
        eager = capsys.readouterr().out
        assert main([*argv, *COMPILE]) == 0
        compiled = capsys.readouterr()
        assert compiled.out == eager and eager.strip()
        assert "compiled forward for a new input shape" in compiled.err
