"""``alicemind cap``: recipes, prune -> evaluate -> reproduce on a tiny GLUE folder, one-line errors."""

from __future__ import annotations

import json

import pytest

from alicemind.core.cli import list_recipes, load_recipe, main

WORDS = "good bad great awful fine movie film plot acting boring fun dull nice poor".split()


@pytest.fixture
def glue_setup(tmp_path, tiny):
    import transformers

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))  # reads vocab.txt (any version)
    for name, seed, labels in (("student", 0, 2), ("teacher", 1, 2), ("teacher3", 2, 3)):
        model = tiny.hf_bert(num_labels=labels, seed=seed)
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    data = tmp_path / "SST-2"
    data.mkdir()
    rows = [(" ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(4)), i % 2) for i in range(16)]
    for split, part in (("train", rows), ("dev", rows[:8])):
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in part))
    return tmp_path


def _args(root, out, *extra):
    return [
        "cap", "prune", "--recipe", "glue-sst-2", "--no-progress", f"data_dir={root / 'SST-2'}",
        f"model={root / 'student'}", f"teacher={root / 'teacher'}", f"output_dir={out}", "max_seq_length=16",
        "cap.sparsities=[0.25,0.5]", "cap.retrain_epochs=1", "cap.extra_examples=8", "training.per_device_batch_size=4",
        "training.device=cpu", "training.precision=fp32", *extra,
    ]  # fmt: skip


def test_recipes_state_their_source_and_the_original_values():
    names = list_recipes("cap")
    assert {"glue-mnli", "glue-qqp", "glue-sst-2", "glue-qqp-cap-m", "glue-qqp-cap-soft"} <= set(names)
    for name in names:
        assert load_recipe("cap", name)  # parses
    from importlib.resources import files

    for item in files("alicemind.cap").joinpath("recipes").iterdir():
        assert item.read_text().startswith("# Source: ContrastivePruning/"), item.name
    sst2 = load_recipe("cap", "glue-sst-2")
    assert sst2["cap"]["sparsities"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert (sst2["training"]["lr"], sst2["training"]["per_device_batch_size"], sst2["cap"]["w_sup"]) == (2e-5, 16, 3.0)
    topk = load_recipe("cap", "glue-qqp-cap-m")["cap"]
    assert (topk["final_sparsity"], topk["warmup_steps"], topk["w_unsup"], topk["w_sup"]) == (0.97, 11000, 0.1, 10.0)
    soft = load_recipe("cap", "glue-qqp-cap-soft")["cap"]
    assert (soft["method"], soft["final_lambda"], soft["soft_final_threshold"]) == ("cap-soft", 550.0, 0.1)


def test_prune_evaluate_reproduce(glue_setup, capsys):
    root, out = glue_setup, glue_setup / "run"
    assert main(_args(root, out)) == 0
    summary = json.loads((out / "cap_results.json").read_text())
    assert [s["heads"] for s in summary["steps"]] == [0.25, 0.5] and "accuracy" in summary["steps"][0]
    small = out / "step-2" / "model"
    structure = json.loads((small / "cap_pruning.json").read_text())
    assert sum(structure["heads_per_layer"]) == 4 and sum(structure["intermediate_per_layer"]) == 64
    capsys.readouterr()
    assert main(["cap", "evaluate", "--model", str(small), "--data-dir", str(root), "--task", "sst-2",
                 "--tokenizer", str(root / "student")]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["parameters"] == structure["parameters"]
    assert result["accuracy"] == pytest.approx(summary["steps"][1]["accuracy"])
    assert main(["cap", "reproduce", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| sst-2 | cap-f | 50% | accuracy" in table and "Our runs without a readable paper value" in table
    assert "| qqp | cap-m | 90% | accuracy 91.6, f1 87.7 | not run |" in table


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["cap.final_sparsity=1.5"], "cap.final_sparsity"),
        (["cap.method=cap-x"], "cap.method"),
        ([], "teacher"),
    ],
)
def test_bad_input_exits_2_with_one_line(glue_setup, capsys, extra, message):
    args = _args(glue_setup, glue_setup / "bad", *extra)
    if not extra:
        args = [a.replace("teacher=" + str(glue_setup / "teacher"), "teacher=" + str(glue_setup / "teacher3"))
                for a in args]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_help_lists_recipes_and_keys(capsys):
    assert main(["cap", "reproduce", "--help"]) == 0
    assert "97% retention" in " ".join(capsys.readouterr().out.split())
    assert main(["cap", "prune", "--help"]) == 0
    text = capsys.readouterr().out
    assert "glue-qqp-cap-m" in text and "cap.sparsities" in text and "step-K/model" in text


def test_prune_cap_m_writes_masked_model_and_report(glue_setup, capsys):
    root, out = glue_setup, glue_setup / "cap-m"
    extra = ["cap.method=cap-m", "+cap.final_sparsity=0.5", "+cap.warmup_steps=1", "+cap.initial_warmup=0",
             "+cap.final_warmup=1", "training.num_epochs=2"]  # fmt: skip
    assert main(_args(root, out, *extra)) == 0
    report = json.loads((out / "model" / "sparsity_report.json").read_text())
    assert report["overall"] == pytest.approx(0.5, abs=1e-3) and len(report["per_matrix"]) == 12
    capsys.readouterr()
    assert main(["cap", "evaluate", "--model", str(out / "model"), "--data-dir", str(root), "--task", "sst-2",
                 "--tokenizer", str(root / "student")]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["sparsity"] == pytest.approx(0.5, abs=1e-3)
    summary = json.loads((out / "cap_results.json").read_text())
    assert result["accuracy"] == pytest.approx(summary["result"]["accuracy"])
