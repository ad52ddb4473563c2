"""``structvbert evaluate`` and ``predict`` with ``--compile`` (a tracing-only backend, so the test stays cheap)
print exactly what they print without it."""

from __future__ import annotations

import pytest
import torch
from structvbert_testing import TINY, synthetic_vqa

from alicemind.core.cli import main
from alicemind.structvbert.finetuning import run_finetune

COMPILE = ["--compile", "--compile-backend", "aot_eager"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_evaluate_and_predict_with_compile_print_the_eager_output(tmp_path, capsys):
    data = synthetic_vqa(tmp_path / "vqa")
    recipe = dict(task="vqa", data_dir=str(data), train_splits=["train"], eval_split="valid",
                  features=[str(data / "features.tsv")], feature_cache=str(data / "cache"), tokenizer=str(data),
                  scratch_config="structvbert.test", model_config=dict(TINY), max_objects=8, max_text_length=12,
                  output_dir=str(tmp_path / "run"), eval_batch_size=16,
                  training=dict(num_epochs=None, max_steps=2, per_device_batch_size=12, precision="fp32",
                                save_every=0, progress_bar=False))  # fmt: skip
    model = str(run_finetune(recipe, progress_bar=False).model_dir)
    cache = ["--feature-cache", str(data / "cache")]
    verbs = [
        ["structvbert", "evaluate", "--model", model, "--task", "vqa", "--data-dir", str(data), "--split", "valid",
         *cache],
        ["structvbert", "predict", "--model", model, *cache, "--image-id", "img1", "--question", "what color is it"],
    ]  # fmt: skip
    for argv in verbs:
        capsys.readouterr()
        assert main(argv) == 0
        eager = capsys.readouterr().out
        assert main([*argv, *COMPILE]) == 0
        compiled = capsys.readouterr()
        assert compiled.out == eager and eager.strip()
        assert "compiled forward for a new input shape" in compiled.err
