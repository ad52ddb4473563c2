"""The ``alicemind structurallm`` verbs end to end on tiny files: convert, finetune, evaluate, predict, reproduce,
download (offline), list, and one-line errors."""

from __future__ import annotations

import functools
import http.server
import json
import tarfile
import threading

import numpy as np
import pytest
from structurallm_testing import funsd_annotation, released_variables, write_funsd_split

from alicemind.core.checkpoint.tf1_writer import save_tf_checkpoint
from alicemind.core.cli import main
from alicemind.core.hub import CheckpointEntry, register_checkpoint, unregister_checkpoint
from alicemind.structurallm import StructuralLMConfig, StructuralLMModel

OVERRIDES = ["max_seq_length=32", "doc_stride=8", "training.max_steps=100", "training.lr=3e-3",
             "training.per_device_batch_size=8", "training.precision=fp32", "training.save_every=0",
             "training.num_epochs=null", "training.warmup_ratio=0.1", "+model_config.hidden_dropout_prob=0.0"]  # fmt: skip


def test_convert_release_folder_with_its_bert_config_and_tokenizer(tmp_path, tokenizer, capsys):
    cfg = StructuralLMConfig.from_preset("structurallm.test")
    release = tmp_path / "structural_lm_models"
    tf = released_variables(cfg)
    save_tf_checkpoint(release / "model.ckpt-160000", tf)
    save_tf_checkpoint(release / "model.ckpt-150000", tf)  # the older step is not the one read
    fields = {k: v for k, v in cfg.to_dict().items() if k in ("attention_probs_dropout_prob", "hidden_size",
              "initializer_range", "intermediate_size", "max_position_embeddings", "num_attention_heads",
              "num_hidden_layers", "type_vocab_size", "vocab_size")}  # fmt: skip
    release_config = {**fields, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_type": "self",
                      "bbox_vocab_size": cfg.bbox_vocab_size}  # fmt: skip
    (release / "config.json").write_text(json.dumps(release_config))
    for name in ("vocab.json", "merges.txt"):
        (release / name).write_bytes((tmp_path / "tokenizer" / name).read_bytes())
    assert main(["structurallm", "convert", str(release), str(tmp_path / "out")]) == 0
    assert "structurallm-tf1 format" in capsys.readouterr().out
    model = StructuralLMModel.from_pretrained(tmp_path / "out")
    assert model.config.hidden_act == "geluerf" and model.config.attention_type == "self"
    np.testing.assert_array_equal(model.embeddings.layout.x1_embeddings.weight.detach().numpy(),
                                  tf["bert/embeddings/pos_x1_embeddings"])  # fmt: skip
    assert (tmp_path / "out" / "vocab.json").is_file()


def test_finetune_evaluate_predict_and_reproduce(tmp_path, tokenizer, capsys):
    data = tmp_path / "data" / "funsd"
    write_funsd_split(data / "training_data" / "annotations", 16, seed=0)
    write_funsd_split(data / "testing_data" / "annotations", 4, seed=1)
    base = tmp_path / "base"
    StructuralLMModel(StructuralLMConfig.from_preset("structurallm.test")).save_pretrained(base)
    tokenizer.save_pretrained(base)
    run = tmp_path / "run"
    args = ["--recipe", "funsd", f"data_dir={data}", f"model={base}", f"output_dir={run}", *OVERRIDES]
    assert main(["structurallm", "finetune", "--no-progress", *args]) == 0
    metrics = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert metrics["f1"] > 0.9
    assert main(["structurallm", "evaluate", "--recipe", "funsd", f"data_dir={data}", "--model", str(run / "model"),
                 "max_seq_length=32", "doc_stride=8"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["f1"] == pytest.approx(metrics["f1"])
    page = data / "testing_data" / "annotations" / "page_000.json"
    assert main(["structurallm", "predict", str(page), "--model", str(run / "model"), "--max-seq-length", "32"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["entities"][0] == {"label": "HEADER", "text": "the form", "words": [0, 1]}
    assert [w["label"] for w in out["words"][:4]] == ["B-HEADER", "I-HEADER", "B-QUESTION", "I-QUESTION"]
    assert main(["structurallm", "reproduce", "reproduce-structurallm-paper", "--checkpoint", str(base),
                 "--data-dir", str(tmp_path / "data"), "--tasks", "funsd", "--output", str(tmp_path / "rep"),
                 "--no-progress", *OVERRIDES]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert "| funsd | f1 |" in table and "| 85.14 |" in table
    assert json.loads((tmp_path / "rep" / "results.json").read_text())["funsd"]["mean"] > 90


def test_bad_input_is_one_line_with_status_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(funsd_annotation([("question", "name", [-5, 0, 10, 10])])))
    model = tmp_path / "m"
    model.mkdir()
    assert main(["structurallm", "predict", str(bad), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a fine-tuned model folder" in err
    assert main(["structurallm", "convert", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["structurallm", "finetune", "--recipe", "funsd", "data_dir=/nonexistent"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_predict_refuses_a_bad_box(tmp_path, tokenizer, capsys):
    from alicemind.structurallm import StructuralLMForTokenClassification

    folder = tmp_path / "tagger"
    StructuralLMForTokenClassification(StructuralLMConfig.from_preset("structurallm.test")).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(funsd_annotation([("question", "name", [-5, 0, 10, 10])])))
    assert main(["structurallm", "predict", str(bad), "--model", str(folder), "--page-size", "100", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "negative coordinate" in err


def test_download_verb_from_a_local_server(tmp_path, monkeypatch, capsys):
    # The release's shape: one top folder structural_lm_models/ with the checkpoint file and model.ckpt-160000.*,
    # served over HTTP on 127.0.0.1 (never the network).
    cfg = StructuralLMConfig.from_preset("structurallm.test")
    top = tmp_path / "srv" / "structural_lm_models"
    tf = released_variables(cfg)
    save_tf_checkpoint(top / "model.ckpt-160000", tf)
    (top / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-160000"\n')
    (top / "config.json").write_text(json.dumps({**cfg.to_dict(), "model_type": None, "hidden_act": "gelu"}))
    with tarfile.open(tmp_path / "srv" / "tiny.tar.gz", "w:gz") as tar:
        tar.add(top, arcname="structural_lm_models")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "srv"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    entry = CheckpointEntry(name="structurallm.test.tiny", family="structurallm", filename="tiny.tar.gz",
                            format="structurallm-tf1", archive=True,
                            url=f"http://127.0.0.1:{server.server_address[1]}/tiny.tar.gz")  # fmt: skip
    register_checkpoint(entry)
    try:
        assert main(["structurallm", "download", "structurallm.test.tiny", "--output", str(tmp_path / "ours")]) == 0
    finally:
        unregister_checkpoint("structurallm.test.tiny")
        server.shutdown()
    assert "structurallm-tf1 format" in capsys.readouterr().out
    model = StructuralLMModel.from_pretrained(tmp_path / "ours")
    np.testing.assert_array_equal(model.embeddings.bbox_embeddings.weight.detach().numpy(),
                                  tf["bert/embeddings/bbox_embeddings"])  # fmt: skip


def test_list_and_offline_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    assert main(["list"]) == 0
    assert "structurallm.en.large" in capsys.readouterr().out
    assert main(["structurallm", "download", "structurallm.en.large", "--offline"]) == 2
    assert "structurallm.en.large" in capsys.readouterr().err
