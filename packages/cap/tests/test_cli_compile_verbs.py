"""``cap evaluate --compile`` (a tracing-only backend, so the test stays cheap) prints exactly what it prints
without it, and reports each compiled shape on stderr."""

from __future__ import annotations

import json

from alicemind.core.cli import main

COMPILE = ["--compile", "--compile-backend", "aot_eager"]
WORDS = "good bad great awful fine movie film plot acting boring fun dull nice poor".split()


def test_evaluate_with_compile_prints_the_eager_metrics(tmp_path, tiny, capsys):
    import transformers

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))
    model_dir = tmp_path / "model"
    tiny.hf_bert(num_labels=2, seed=3).save_pretrained(model_dir)  # model.safetensors: what load_pruned reads
    tokenizer.save_pretrained(model_dir)
    data = tmp_path / "SST-2"
    data.mkdir()
    # Ragged sentences (2..6 words) in batches of 4: three batches of different widths, one bucket under --compile.
    rows = [(" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(2 + i % 5)), i % 2) for i in range(11)]
    (data / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    argv = ["cap", "evaluate", "--model", str(model_dir), "--data-dir", str(data), "--task", "sst-2",
            "--max-seq-length", "16", "--batch-size", "4"]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 0
    eager = capsys.readouterr().out
    assert main([*argv, *COMPILE]) == 0
    compiled = capsys.readouterr()
    assert compiled.out == eager
    result = json.loads(eager)
    assert result["task"] == "sst-2" and 0.0 <= result["accuracy"] <= 1.0
    # Every batch is padded to the one bucket (16): one compile for the full batches, one for the last (3 rows).
    reports = [line for line in compiled.err.splitlines() if "compiled forward for a new input shape" in line]
    assert len(reports) == 2, compiled.err
