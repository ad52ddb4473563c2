"""The ``alicemind latticebert`` verbs end to end on tiny files: convert, finetune, reproduce, build-lexicon, list,
download (offline), and one-line errors."""

from __future__ import annotations

import json
import random

import pytest
import torch
from labert_testing import ner_sentence, tiny_config, write_conll, write_lexicon, write_vocab
from labert_tf1 import released_tensors, write_release_folder

from alicemind.core.cli import main
from alicemind.latticebert import LatticeBertModel, LatticeBertTokenizer


@pytest.fixture
def release_folder(tmp_path):
    folder = tmp_path / "chinese_labert-tiny-std-512"
    folder.mkdir()
    write_vocab(folder)
    write_lexicon(folder)
    vocab = LatticeBertTokenizer.from_pretrained(folder).vocab_size
    torch.manual_seed(0)
    model = LatticeBertModel(tiny_config(vocab)).eval()
    config = {**model.config.to_dict(), "hidden_act": "gelu"}
    config.pop("model_type")
    write_release_folder(folder, released_tensors(model, "model"), config)
    return folder, model


def test_convert_writes_weights_and_tokenizer(tmp_path, release_folder, capsys):
    folder, source = release_folder
    assert main(["latticebert", "convert", str(folder), str(tmp_path / "out")]) == 0
    assert "latticebert-tf1 format" in capsys.readouterr().out
    model = LatticeBertModel.from_pretrained(tmp_path / "out")
    assert torch.equal(model.position_bias.reset_theta_1, source.position_bias.reset_theta_1)
    tok = LatticeBertTokenizer.from_pretrained(tmp_path / "out")
    assert tok.encode("研究生命").input_ids == LatticeBertTokenizer.from_pretrained(folder).encode("研究生命").input_ids


def test_finetune_ner_from_a_converted_release_and_reproduce(tmp_path, release_folder, capsys):
    folder, _ = release_folder
    rng = random.Random(0)
    data = tmp_path / "data" / "afqmc"
    data.mkdir(parents=True)
    rows = [{"sentence1": "北京工作", "sentence2": "北京" if i % 2 else "天气", "label": str(i % 2)} for i in range(8)]
    for split in ("train", "dev"):
        (data / f"{split}.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    ner = tmp_path / "ner"
    ner.mkdir()
    write_conll(ner / "train.txt", [ner_sentence(rng) for _ in range(8)])
    write_conll(ner / "dev.txt", [ner_sentence(rng) for _ in range(4)])
    quick = ["training.max_steps=2", "training.num_epochs=null", "training.per_device_batch_size=4",
             "training.log_every=0", "training.save_every=0", "training.precision=fp32"]  # fmt: skip
    args = ["latticebert", "finetune", "--recipe", "ner-msra", "--no-progress", f"data_dir={ner}",
            f"model={folder}", f"output_dir={tmp_path / 'run'}", *quick]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "eval_results.json").read_text())["metrics"]
    assert set(metrics) == {"precision", "recall", "f1"}
    capsys.readouterr()
    args = ["latticebert", "reproduce", "reproduce-latticebert-readme", "--checkpoint", str(folder), "--data-dir",
            str(tmp_path / "data"), "--output", str(tmp_path / "rep"), "--no-progress", *quick]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| afqmc | accuracy |" in out and "| 70 |" in out
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())["afqmc"]
    assert len(saved["scores"]) == 1 and 0 <= saved["mean"] <= 100


def test_build_lexicon_with_jieba(tmp_path, vocab_file):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("我们在北京工作。\n我们在上海工作。\n北京天气很好。\n", encoding="utf-8")
    out = tmp_path / "lexicon.txt"
    assert main(["latticebert", "build-lexicon", str(corpus), str(out), "--vocab", str(vocab_file)]) == 0
    words = out.read_text(encoding="utf-8").split()
    assert {"我们", "北京", "工作"} <= set(words)
    tok = LatticeBertTokenizer.from_files(vocab_file, out)
    assert "北京" in tok.lattice("北京").tokens


def test_list_names_releases_and_recipes(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("latticebert.tiny", "latticebert.lite", "latticebert.base", "clue-afqmc", "ner-msra"):
        assert name in out


def test_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    assert main(["latticebert", "convert", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert main(["latticebert", "download", "latticebert.tiny", "--offline"]) == 2
    assert main(["latticebert", "finetune", "--recipe", "clue-afqmc", "data_dir=/nonexistent"]) == 2
    assert main(["latticebert", "finetune", "--recipe", "clue-afqmc", "kind=regress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith(("alicemind", "error")) for line in err), err


def test_pretrain_verb_writes_a_loadable_model(tmp_path, release_folder, capsys):
    from labert_testing import write_corpus

    from alicemind.latticebert import LatticeBertForPreTraining

    folder, _ = release_folder
    corpus = write_corpus(tmp_path / "corpus.txt", docs=4)
    args = ["latticebert", "pretrain", "--recipe", "pretrain-demo", "--no-progress", f"corpus={corpus}",
            f"tokenizer={folder}", f"output_dir={tmp_path / 'pt'}", "data.max_seq_length=24", "data.dupe_factor=1",
            "training.max_steps=2", "training.per_device_batch_size=4", "training.precision=fp32"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "eval mlm_loss:" in out and "eval sr_loss:" in out
    model = LatticeBertForPreTraining.from_pretrained(tmp_path / "pt" / "model")
    assert model.source_format == "alicemind"
    assert model.cls_predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
