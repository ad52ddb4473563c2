"""The ``alicemind palm`` verbs and the shipped recipes."""

from __future__ import annotations

import functools
import http.server
import json
import tarfile
import threading

import pytest
import torch
from palm_releases import sofa_state_dict, write_sofa_folder

from alicemind.core.cli import list_recipes, load_recipe, main
from alicemind.core.generation import GenerationConfig
from alicemind.core.hub import CheckpointEntry, register_checkpoint, unregister_checkpoint
from alicemind.core.training import TrainingConfig
from alicemind.palm import PalmForConditionalGeneration, PalmForPreTraining, load_model, load_tokenizer

CHARS = "天气今明后晴雨多云风大小温度高低北京上海问答是什么哪里"


@pytest.fixture
def tiny_zh_folder(tmp_path, make_config):
    """A random tiny Chinese PALM saved in our layout with a WordPiece vocab.txt."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS]
    config = make_config("sofa-zh", vocab_size=len(vocab), pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    PalmForConditionalGeneration(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return folder


def test_recipes_state_source_and_build_valid_configs(make_model):
    names = list_recipes("palm")
    assert {"pretrain", "generate", "reproduce", "finetune-cnndm", "finetune-lcsts", "finetune-dureader-qg"} <= set(
        names
    )
    model = make_model("sofa-zh")
    for name in names:
        recipe = load_recipe("palm", name)
        assert recipe, name
        if "training" in recipe:
            TrainingConfig.from_dict(recipe["training"])
        if "generation" in recipe:
            GenerationConfig.from_dict({**model.generation_defaults(), **recipe["generation"]})
    for task in load_recipe("palm", "reproduce")["tasks"].values():
        assert set(load_recipe("palm", task["recipe"])["published"]) == {"bleu-1", "bleu-4", "rouge-l"}


def test_recipe_files_say_where_they_come_from():
    import importlib.resources

    folder = importlib.resources.files("alicemind.palm") / "recipes"
    for item in folder.iterdir():
        if item.name.endswith(".yaml"):
            assert item.read_text(encoding="utf-8").startswith("# Source:"), item.name


def test_convert_verb(tmp_path, capsys):
    write_sofa_folder(tmp_path / "sofa", sofa_state_dict())
    assert main(["palm", "convert", str(tmp_path / "sofa"), str(tmp_path / "out")]) == 0
    assert "PalmForPreTraining" in capsys.readouterr().out
    assert isinstance(load_model(tmp_path / "out"), PalmForPreTraining)
    assert main(["palm", "convert", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2


def test_download_verb_from_a_local_server(tmp_path, monkeypatch, capsys):
    # A release tarball holding one top-level folder, served over HTTP on 127.0.0.1.
    write_sofa_folder(tmp_path / "srv" / "chinese-palm-base", sofa_state_dict())
    with tarfile.open(tmp_path / "srv" / "tiny.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "srv" / "chinese-palm-base", arcname="chinese-palm-base")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "srv"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    entry = CheckpointEntry(name="palm.test.tiny", family="palm", filename="tiny.tar.gz", format="sofa-dir-tar",
                            url=f"http://127.0.0.1:{server.server_address[1]}/tiny.tar.gz", archive=True)  # fmt: skip
    register_checkpoint(entry)
    try:
        assert main(["palm", "download", "palm.test.tiny", "--output", str(tmp_path / "ours")]) == 0
    finally:
        unregister_checkpoint("palm.test.tiny")
        server.shutdown()
    assert (tmp_path / "ours" / "vocab.txt").is_file()
    assert load_model(tmp_path / "ours").source_format == "alicemind"


def test_english_release_explains_manual_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path))
    monkeypatch.delenv("ALICEMIND_OFFLINE", raising=False)
    assert main(["palm", "download", "palm.en.base"]) == 2
    err = capsys.readouterr().err
    assert "drive.google.com" in err and "palm_model_and_data.tar.gz" in err and str(tmp_path) in err


def test_finetune_generate_evaluate_verbs(tiny_zh_folder, tmp_path, capsys):
    pairs = ["天气晴\t天气晴", "明天雨\t明天雨", "北京大风\t北京大风", "上海多云\t上海多云"]
    (tmp_path / "train.tsv").write_text("\n".join(pairs * 4) + "\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    out_dir = tmp_path / "run"
    args = ["palm", "finetune", "--recipe", "finetune-dureader-qg", f"model={tiny_zh_folder}",
            f"data.train={tmp_path / 'train.tsv'}", f"data.valid={tmp_path / 'dev.tsv'}", "data.max_target_length=8",
            "training.num_epochs=null", "+training.max_steps=3", "training.per_device_batch_size=4",
            "+training.progress_bar=false", "training.precision=fp32", "+training.device=cpu",
            f"training.output_dir={out_dir}", "generation.num_beams=2", "generation.max_new_tokens=6"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    final = out_dir / "final"
    assert result["output_dir"] == str(final) and result["train_loss"] > 0
    assert set(result["metrics"]) >= {"bleu-1", "bleu-4", "rouge-l"}
    assert all(0.0 <= v <= 1.0 for v in result["metrics"].values())
    predictions = (final / "eval_predictions.txt").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == len(pairs)
    assert isinstance(load_tokenizer(final).decode([5, 6]), str)

    (tmp_path / "in.txt").write_text("天气晴\n北京大风\n", encoding="utf-8")
    gen = ["palm", "generate", "--model", str(final), "--input", str(tmp_path / "in.txt"), "--output",
           str(tmp_path / "gen.txt"), "generation.num_beams=1", "generation.max_new_tokens=5"]  # fmt: skip
    assert main(gen) == 0
    generated = (tmp_path / "gen.txt").read_text(encoding="utf-8").splitlines()
    assert len(generated) == 2 and all(" " not in line for line in generated)  # Chinese output is detokenised

    (tmp_path / "ref.txt").write_text("天气晴朗\n北京大风\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("天气晴朗\n北京大风\n", encoding="utf-8")
    ev = ["palm", "evaluate", "--predictions", str(tmp_path / "hyp.txt"), "--references", str(tmp_path / "ref.txt")]
    assert main(ev) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["bleu-1"] == pytest.approx(1.0) and scores["rouge-l"] == pytest.approx(1.0)
    (tmp_path / "hyp.txt").write_text("天气\n北京\n", encoding="utf-8")
    assert main(ev) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["bleu-1"] < 1.0 and 0.0 < scores["rouge-l"] < 1.0


def test_generate_texts_batches_by_length_and_keeps_input_order(tiny_zh_folder, monkeypatch):
    from alicemind.core.generation import GenerationOutput
    from alicemind.palm import runner

    batches = []

    def echo(model, input_ids, attention_mask, config):
        """Stands in for decoding: 'generates' each source's own tokens, so outputs name their source."""
        batches.append(attention_mask.sum(1).tolist())
        body = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, 0)  # drop [CLS]; padding decodes to ""
        start = torch.full((input_ids.shape[0], 1), 2)
        return GenerationOutput(sequences=torch.cat([start, body], 1), scores=torch.zeros(len(body)),
                                lengths=torch.full((len(body),), body.shape[1]))  # fmt: skip

    monkeypatch.setattr(runner, "generate", echo)
    model, tokenizer = load_model(tiny_zh_folder), load_tokenizer(tiny_zh_folder)
    sources = ["天气", "北京大风多云温度低", "上海雨", "明天晴天气高温北京上海", "问答"]
    config = GenerationConfig(**model.generation_defaults(), max_new_tokens=4)
    out = runner.generate_texts(model, tokenizer, sources, config, max_source_length=16, batch_size=2, progress=False)
    assert out == sources  # [SEP] and padding are special tokens, skipped when decoding
    lengths = [n for batch in batches for n in batch]
    assert lengths == sorted(lengths, reverse=True) and len(batches) == 3  # longest first, in batches of 2


def test_generate_verb_refuses_an_impossible_length_in_one_line(tiny_zh_folder, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("天气晴\n", encoding="utf-8")
    limit = load_model(tiny_zh_folder).max_decoder_positions
    args = ["palm", "generate", "--model", str(tiny_zh_folder), "--input", str(tmp_path / "in.txt"),
            "--no-progress", f"generation.max_new_tokens={limit}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alicemind: error:") and "lower max_new_tokens" in err and "\n" not in err


def test_unknown_recipe_key_is_a_clean_error(capsys):
    assert main(["palm", "finetune", "--recipe", "finetune-lcsts", "trainig.lr=1"]) == 2
    assert "training" in capsys.readouterr().err


def test_pretrain_verb(tiny_zh_folder, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    docs = ["今天天气晴\n明天多云有风\n后天大雨", "北京温度高\n上海温度低\n问答是什么"]
    corpus.write_text("\n\n".join(docs * 10) + "\n", encoding="utf-8")
    args = ["palm", "pretrain", f"corpus={corpus}", f"tokenizer={tiny_zh_folder}", "data.max_source_length=10",
            "data.max_target_length=6", "training.max_steps=4", "training.per_device_batch_size=8",
            "+training.progress_bar=false", "training.precision=fp32", "+training.device=cpu", "training.log_every=2",
            f"training.output_dir={tmp_path / 'pt'}"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["instances"] >= 20
    model = load_model(result["output_dir"])
    assert isinstance(model, PalmForPreTraining) and model.config.vocab_size == 5 + len(CHARS)
    assert (model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id) == (0, 2, 3)


def test_reproduce_verb_prints_ours_beside_published(tiny_zh_folder, tmp_path, capsys):
    pairs = "天气晴\t天气晴\n明天雨\t明天雨\n"
    for task in ("dureader-qg", "dureader-robust", "lcsts"):
        (tmp_path / task).mkdir()
        (tmp_path / task / "train.tsv").write_text(pairs * 2, encoding="utf-8")
        (tmp_path / task / "dev.tsv").write_text(pairs, encoding="utf-8")
    overrides = [f"model={tiny_zh_folder}", "training.num_epochs=null", "+training.max_steps=1",
                 "+training.progress_bar=false", "training.precision=fp32", "+training.device=cpu",
                 f"training.output_dir={tmp_path / 'runs'}", "generation.num_beams=1", "generation.max_new_tokens=4"]  # fmt: skip
    args = ["palm", "reproduce", f"data_dir={tmp_path}", f"overrides={json.dumps(overrides, ensure_ascii=False)}",
            "--tasks", "dureader-qg", "lcsts"]  # fmt: skip
    assert main(args) == 0
    table = capsys.readouterr().out.strip().splitlines()
    rows = [line.split("|")[1:-1] for line in table[2:]]
    assert [r[0].strip() for r in rows] == ["dureader-qg"] * 3 + ["lcsts"] * 3
    published = {(r[0].strip(), r[1].strip()): float(r[3]) for r in rows}
    assert published[("lcsts", "bleu-4")] == 0.1716 and published[("dureader-qg", "rouge-l")] == 0.6027
    assert all(0.0 <= float(r[2]) <= 1.0 for r in rows)


def test_presumm_optimizer_follows_noam_per_group(make_model):
    from alicemind.palm.runner import presumm_optimizer

    model = make_model("presumm-en")
    recipe = load_recipe("palm", "finetune-cnndm")["optim"]
    optimizer, scheduler = presumm_optimizer(model, {**recipe, "warmup_encoder": 4, "warmup_decoder": 8})
    encoder, decoder = optimizer.param_groups
    assert len(encoder["params"]) + len(decoder["params"]) == len(list(model.parameters()))
    assert any(p is model.embeddings.word_embeddings.weight for p in encoder["params"])
    assert any(p is model.decoder_embeddings.word_embeddings.weight for p in decoder["params"])
    lrs = []
    for _ in range(12):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    # lr * min(step^-0.5, step * warmup^-1.5): peaks lr / sqrt(warmup) at step == warmup.
    assert lrs[3][0] == pytest.approx(2e-3 / 2) and max(r[0] for r in lrs) == pytest.approx(2e-3 / 2)
    assert lrs[7][1] == pytest.approx(0.1 / 8**0.5) and max(r[1] for r in lrs) == pytest.approx(0.1 / 8**0.5)


def test_finetune_takes_child_tuning(tiny_zh_folder, tmp_path, capsys):
    """child_tuning=D reserve_p=P: only the Fisher-selected entries of the transformer layers move."""
    pytest.importorskip("alicemind.childtuning")
    from alicemind.palm.convert import load_model

    pairs = ["天气晴\t天气晴", "明天雨\t明天雨", "北京大风\t北京大风", "上海多云\t上海多云"]
    (tmp_path / "train.tsv").write_text("\n".join(pairs * 4) + "\n", encoding="utf-8")
    out_dir = tmp_path / "run"
    args = ["palm", "finetune", "--recipe", "finetune-dureader-qg", f"model={tiny_zh_folder}",
            f"data.train={tmp_path / 'train.tsv'}", "data.max_target_length=8", "child_tuning=D", "reserve_p=0.2",
            "training.num_epochs=null", "+training.max_steps=3", "training.per_device_batch_size=4",
            "training.weight_decay=0.0", "training.lr=1e-2", "+training.progress_bar=false",
            "training.precision=fp32", "+training.device=cpu", f"training.output_dir={out_dir}"]  # fmt: skip
    assert main(args) == 0
    before = load_model(tiny_zh_folder).state_dict()
    after = load_model(out_dir / "final").state_dict()
    # The D mask is one global top-20% over every parameter named like the original's 'layer' filter.
    selected = [k for k in before if "layer" in k and before[k].is_floating_point()]
    changed = sum(int((before[k] != after[k]).sum()) for k in selected)
    total = sum(before[k].numel() for k in selected)
    assert 0.0 < changed / total <= 0.2 + 1e-3
    capsys.readouterr()
    assert main([*args[:-1], "child_tuning=D", "reserve_p=null", args[-1]]) == 2  # no published p for generation
    assert "reserve_p" in capsys.readouterr().err
