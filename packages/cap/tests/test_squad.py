"""SQuAD: sliding windows, span decoding across windows, the recipes' original values, prune -> evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alicemind.cap.squad import best_answers, encode_windows
from alicemind.core.cli import load_recipe, main
from alicemind.core.data.own_spans import QAExample, read_squad

WORDS = "the cat sat on a mat dog ran to park who what where did red blue big small house tree".split()


def _tokenizer(tmp_path):
    import transformers

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return transformers.BertTokenizerFast.from_pretrained(str(tmp_path))  # reads vocab.txt (any version)


def _squad_json(path, n: int = 6) -> None:
    paragraphs = []
    for i in range(n):
        context = " ".join(WORDS[(i + j) % 12] for j in range(20)) + " red house"
        answer = "red house"
        qas = [{"id": f"q{i}", "question": "where did the cat sat", "answers": [
            {"text": answer, "answer_start": context.index(answer)}]}]  # fmt: skip
        paragraphs.append({"context": context, "qas": qas})
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))


def test_windows_hold_the_answer_pieces_in_both_stride_modes(tmp_path):
    tok = _tokenizer(tmp_path)
    context = " ".join(WORDS[j % 12] for j in range(20)) + " red house"
    example = QAExample("q", "who sat", context, (("red house", context.index("red house")),))
    # 16 pieces - 2 question - 3 special = 11 context pieces a window; 22 context words, one piece each
    for mode, starts in (("overlap", [0, 6, 12]), ("step", [0, 4, 8, 12])):  # overlap 5 = steps of 6
        feats = encode_windows(tok, [example], max_length=16, doc_stride=4 if mode == "step" else 5,
                               doc_stride_mode=mode)  # fmt: skip
        first_context = [f["context_mask"].index(True) for f in feats]
        window_starts = [f["offsets"][c][0] for f, c in zip(feats, first_context)]
        words_before = [len(context[:s].split()) for s in window_starts]
        assert words_before == starts, mode
        for f in feats:
            if f["start_positions"]:
                a, b = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
                assert context[a:b] == "red house"
            else:  # the window does not hold the whole answer: [CLS]
                assert (
                    f["end_positions"] == 0
                    and "red house"
                    not in context[
                        f["offsets"][f["context_mask"].index(True)][0] : f["offsets"][len(f["offsets"]) - 2][1]
                    ]
                )
        assert sum(bool(f["start_positions"]) for f in feats) >= 1


def test_best_answer_is_the_highest_scoring_span_over_windows(tmp_path):
    tok = _tokenizer(tmp_path)
    context = " ".join(WORDS[j % 12] for j in range(20))
    example = QAExample("q", "who sat", context, (("cat", 4),))
    feats = encode_windows(tok, [example], max_length=16, doc_stride=5)
    starts = [np.zeros(len(f["input_ids"])) for f in feats]
    ends = [np.zeros(len(f["input_ids"])) for f in feats]
    # window 1: a strong span on its 2nd..3rd context pieces; window 0: a weaker one; [CLS] the strongest (ignored)
    c0, c1 = feats[0]["context_mask"].index(True), feats[1]["context_mask"].index(True)
    starts[0][c0], ends[0][c0] = 1.0, 1.0
    starts[1][c1 + 1], ends[1][c1 + 2] = 3.0, 3.0
    starts[1][0] = ends[1][0] = 50.0
    answer = best_answers([example], feats, starts, ends)["q"]
    off = feats[1]["offsets"]
    assert answer == context[off[c1 + 1][0] : off[c1 + 2][1]] and len(answer.split()) == 2
    ends[1][c1 + 2], ends[1][c1] = 0.0, 9.0  # start c1+1 (3) + end c1 (9) would end before it starts: not allowed
    assert best_answers([example], feats, starts, ends)["q"] == context[off[c1][0] : off[c1][1]]  # (c1, c1): 9
    ends[1][c1] = 0.0
    starts[0][c0] = ends[0][c0] = 2.0  # window 0: 4
    starts[1][c1 + 1], ends[1][c1 + 5] = 3.0, 4.0  # 7, but 5 pieces long: over max_answer_length=3 (then at most 3)
    assert (
        best_answers([example], feats, starts, ends, max_answer_length=3)["q"]
        == context[feats[0]["offsets"][c0][0] : feats[0]["offsets"][c0][1]]
    )
    assert best_answers([example], feats, starts, ends)["q"] == context[off[c1 + 1][0] : off[c1 + 5][1]]


def test_squad_recipes_carry_the_scripts_values():
    f = load_recipe("cap", "squad")
    assert (f["kind"], f["max_seq_length"], f["doc_stride"], f["doc_stride_mode"]) == ("squad", 384, 128, "overlap")
    assert (f["cap"]["tau"], f["cap"]["w_unsup"], f["cap"]["supervised"], f["training"]["lr"]) == (0.3, 0.3, False,
                                                                                                  3e-5)  # fmt: skip
    m = load_recipe("cap", "squad-cap-m")
    assert (m["cap"]["final_sparsity"], m["cap"]["warmup_steps"], m["cap"]["initial_warmup"],
            m["cap"]["final_warmup"], m["cap"]["w_unsup"], m["training"]["per_device_batch_size"],
            m["doc_stride_mode"]) == (0.9, 5400, 1, 2, 0.5, 16, "step")  # fmt: skip
    s = load_recipe("cap", "squad-cap-soft")["cap"]
    assert (s["method"], s["final_lambda"], s["soft_final_threshold"], s["w_unsup"]) == ("cap-soft", 2000.0, 0.1, 0.5)
    mnli_m, mnli_s = load_recipe("cap", "glue-mnli-cap-m"), load_recipe("cap", "glue-mnli-cap-soft")
    assert (mnli_m["task"], mnli_m["cap"]["final_sparsity"], mnli_m["cap"]["w_sup"]) == ("mnli", 0.97, 10.0)
    assert (mnli_s["task"], mnli_s["cap"]["final_lambda"], mnli_s["cap"]["warmup_steps"]) == ("mnli", 680.0, 11000)


@pytest.fixture
def squad_setup(tmp_path):
    import transformers

    tok = _tokenizer(tmp_path)
    for name, seed in (("student", 0), ("teacher", 1)):
        import torch

        torch.manual_seed(seed)
        cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)  # fmt: skip
        transformers.BertForQuestionAnswering(cfg).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    data = tmp_path / "squad"
    data.mkdir()
    _squad_json(data / "train-v1.1.json", 8)
    _squad_json(data / "dev-v1.1.json", 4)
    return tmp_path


def test_prune_squad_then_evaluate_the_smaller_model(squad_setup, capsys):
    root, out = squad_setup, squad_setup / "run"
    args = ["cap", "prune", "--recipe", "squad", "--no-progress", f"data_dir={root / 'squad'}",
            f"model={root / 'student'}", f"teacher={root / 'teacher'}", f"output_dir={out}", "max_seq_length=24",
            "doc_stride=6", "cap.sparsities=[0.5]", "cap.retrain_epochs=1", "cap.extra_examples=8",
            "training.per_device_batch_size=4", "training.device=cpu", "training.precision=fp32"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "cap_results.json").read_text())
    step = summary["steps"][0]
    assert summary["task"] == "squad" and step["heads"] == 0.5 and 0.0 <= step["f1"] <= 1.0
    windows = encode_windows(_tokenizer(root), read_squad(root / "squad" / "train-v1.1.json"), max_length=24,
                             doc_stride=6)  # fmt: skip
    assert len(windows) > 8  # contexts longer than one window: several windows per question
    capsys.readouterr()
    assert main(["cap", "evaluate", "--model", str(out / "step-1" / "model"), "--data-dir", str(root / "squad"),
                 "--task", "squad", "--tokenizer", str(root / "student"), "--max-seq-length", "24",
                 "--doc-stride", "6"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["f1"] == pytest.approx(step["f1"]) and result["exact_match"] == pytest.approx(step["exact_match"])


def test_squad_needs_unsupervised_contrast_only(squad_setup, capsys):
    root = squad_setup
    assert main(["cap", "prune", "--recipe", "squad", f"data_dir={root / 'squad'}", f"model={root / 'student'}",
                 f"teacher={root / 'teacher'}", "cap.supervised=true"]) == 2  # fmt: skip
    assert "cap.supervised must be false" in capsys.readouterr().err


def test_prune_squad_cap_m_reaches_the_asked_sparsity(squad_setup):
    root, out = squad_setup, squad_setup / "cap-m"
    args = ["cap", "prune", "--recipe", "squad-cap-m", "--no-progress", f"data_dir={root / 'squad'}",
            f"model={root / 'student'}", f"teacher={root / 'teacher'}", f"output_dir={out}", "max_seq_length=24",
            "doc_stride=4", "cap.final_sparsity=0.5", "cap.warmup_steps=1", "cap.initial_warmup=0",
            "cap.final_warmup=1", "cap.extra_examples=8", "training.num_epochs=2",
            "training.per_device_batch_size=4", "training.device=cpu", "training.precision=fp32"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "model" / "sparsity_report.json").read_text())
    assert report["overall"] == pytest.approx(0.5, abs=1e-3) and len(report["per_matrix"]) == 12
    result = json.loads((out / "cap_results.json").read_text())["result"]
    assert result["method"] == "cap-m" and 0.0 <= result["exact_match"] <= result["f1"] <= 1.0
