"""The CLI end to end on generated images: finetune + evaluate + caption, ask, convert, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from mplug_testing import release_overrides, release_state_dict, shape_dataset, tiny_config, tokenizer

from alicemind.core.checkpoint import load_state_dict_file as load_file
from alicemind.core.cli import main
from alicemind.mplug import MPlugForVQA

COMPILE = ["--compile", "--compile-backend", "aot_eager"]  # tracing only: the test stays cheap


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    tokenizer().save_pretrained(root / "tok")
    records = []
    for i, (image, colour, shape, _) in enumerate(shape_dataset(48, seed=3)):
        image.save(root / f"{i}.png")
        records.append({"image": f"{i}.png", "caption": f"a {colour} {shape}"})
    (root / "train.json").write_text(json.dumps(records))
    (root / "test.json").write_text(json.dumps([dict(r, caption=[r["caption"]]) for r in records[:6]]))
    return root


def test_finetune_evaluate_and_caption(workspace, capsys):
    w = workspace
    common = [f"tokenizer={w / 'tok'}", "+scratch_config=mplug.test", "image_size=32", f"image_root={w}",
              "augment=false", "+model_config={hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0}"]  # fmt: skip
    rc = main(["mplug", "finetune", "--recipe", "coco-caption", "--no-progress", f"train_file={w / 'train.json'}",
               f"eval_file={w / 'test.json'}", f"output_dir={w / 'run'}", "+training.max_steps=150",
               "training.num_epochs=null", "training.per_device_batch_size=12", "training.lr=3e-3",
               "training.precision=fp32", "training.save_every=0", "generation={num_beams: 2, max_new_tokens: 6}",
               *common])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    metrics = json.loads(out[out.index("{") :])
    assert metrics["CIDEr"] > 1.0 and 0.0 < metrics["BLEU-4"] <= 1.0
    model_dir = w / "run" / "model"
    evaluate = ["mplug", "evaluate", "--recipe", "coco-caption", f"model={model_dir}", f"eval_file={w / 'test.json'}",
                f"image_root={w}", "image_size=32", "generation={num_beams: 2, max_new_tokens: 6}",
                f"output_dir={w / 'eval'}"]  # fmt: skip
    assert main(evaluate) == 0 and json.loads(capsys.readouterr().out)["CIDEr"] == pytest.approx(metrics["CIDEr"])
    saved = json.loads((w / "eval" / "metrics.json").read_text())
    assert saved["recipe"] == "coco-caption" and saved["metrics"]["CIDEr"] == pytest.approx(metrics["CIDEr"])
    assert main(evaluate) == 2  # another evaluation's metrics.json is not replaced silently
    assert "already holds an evaluation" in capsys.readouterr().err
    assert main([*evaluate, "--overwrite"]) == 0
    capsys.readouterr()
    assert (
        main(["mplug", "caption", str(w / "0.png"), str(w / "1.png"), "--model", str(model_dir), "--beams", "2"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(w / "0.png"), str(w / "1.png")]
    assert all(line.split("\t")[1].startswith("a ") for line in lines)
    # --compile: the same captions and metrics; each compiled part's first shape is reported on stderr.
    caption = ["mplug", "caption", str(w / "0.png"), str(w / "1.png"), "--model", str(model_dir), "--beams", "2"]
    assert main([*caption, *COMPILE]) == 0
    compiled = capsys.readouterr()
    assert compiled.out.strip().splitlines() == lines
    assert "compiled decode_step for a new input shape" in compiled.err and compiled.err.count("compiled forward") >= 1
    rc = main([*evaluate[:-1], f"output_dir={w / 'eval_compiled'}", *COMPILE])
    compiled = capsys.readouterr()
    assert rc == 0, compiled.err
    assert (
        json.loads(compiled.out)["CIDEr"] == pytest.approx(metrics["CIDEr"]) and "compiled decode_step" in compiled.err
    )


def test_ask_convert_and_bad_image(workspace, tmp_path, capsys):
    torch.manual_seed(0)
    model = MPlugForVQA(tiny_config())
    torch.save(release_state_dict(model), tmp_path / "mplug_tiny.pth")
    # convert needs the shapes' unknowns (heads, stride...) only for tiny files: ours carry them in config.json
    model.save_pretrained(tmp_path / "vqa")
    tokenizer().save_pretrained(tmp_path / "vqa")
    assert main(["mplug", "ask", str(workspace / "0.png"), "what color is the shape ?", "--model", str(tmp_path / "vqa"),
                 "--beams", "2", "--max-tokens", "3"]) == 0  # fmt: skip
    out = capsys.readouterr().out  # an untrained model: one line of vocabulary words (maybe none)
    assert out.count("\n") == 1 and all(t in tokenizer().get_vocab() for t in out.split())
    assert main(["mplug", "ask", str(workspace / "0.png"), "what color is the shape ?", "--model", str(tmp_path / "vqa"),
                 "--beams", "2", "--max-tokens", "3", *COMPILE]) == 0  # fmt: skip
    compiled = capsys.readouterr()
    assert compiled.out == out and "compiled decode_step" in compiled.err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["mplug", "ask", str(bad), "what ?", "--model", str(tmp_path / "vqa")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.jpg" in err
    assert main(["mplug", "convert", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    # a released-layout file converts; a tiny file states what its shapes cannot tell (head counts, stride...)
    sets = [f"{k}={json.dumps(v)}" for k, v in release_overrides().items()]
    assert main(["mplug", "convert", str(tmp_path / "mplug_tiny.pth"), str(tmp_path / "out"), "--set", *sets]) == 0
    assert "mplug-release-vqa format" in capsys.readouterr().out
    again = MPlugForVQA.from_pretrained(tmp_path / "out")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_scst_recipe_raises_the_cider_reward(workspace):
    """``finetune --recipe coco-caption-scst`` from a briefly CE-trained caption model: the CIDEr-D reward of the
    sampled beams (logged per step) rises. 20 CE steps leave room for it (a converged model is at its ceiling)."""
    w = workspace
    common = ["--no-progress", "image_size=32", f"image_root={w}", "augment=false", f"train_file={w / 'train.json'}",
              "training.num_epochs=null", "training.per_device_batch_size=12", "training.precision=fp32",
              "training.save_every=0", "training.log_every=1", "training.scheduler=constant", "vision_lr=null"]  # fmt: skip
    assert main(["mplug", "finetune", "--recipe", "coco-caption", f"tokenizer={w / 'tok'}", "+scratch_config=mplug.test",
                 "+model_config={hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0}",
                 f"output_dir={w / 'ce'}", "+training.max_steps=20", "training.lr=3e-3", *common]) == 0  # fmt: skip
    assert main(["mplug", "finetune", "--recipe", "coco-caption-scst", f"model={w / 'ce' / 'model'}",
                 f"output_dir={w / 'scst'}", "+training.max_steps=40", "training.lr=3e-4",
                 "scst_options={num_beams: 3, max_new_tokens: 5}", *common]) == 0  # fmt: skip
    log = [json.loads(line) for line in (w / "scst" / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in log if "reward" in r]
    assert len(rewards) == 40
    first, last = sum(rewards[:5]) / 5, sum(rewards[-10:]) / 10
    assert last > first + 0.3, (first, last, rewards)


def test_scst_is_a_caption_option_only(workspace, capsys):
    w = workspace
    rc = main(["mplug", "finetune", "--recipe", "vqa", "+scst=true", f"tokenizer={w / 'tok'}", f"train_file={w / 'train.json'}",
               "+scratch_config=mplug.test", "image_size=32", f"output_dir={w / 'bad'}", "--no-progress"])  # fmt: skip
    assert rc == 2 and "scst is a caption option" in capsys.readouterr().err


def test_a_rerun_resumes_and_resaves_but_a_foreign_model_folder_is_refused(workspace, capsys):
    """``output_dir/model`` is replaced only when it holds what a save writes (this run's model and tokenizer):
    re-running the same finetune resumes from its checkpoint and saves again; other files there stop the run
    before it trains (they are never deleted)."""
    w = workspace
    run = ["mplug", "finetune", "--recipe", "coco-caption", "--no-progress", f"tokenizer={w / 'tok'}",
           "+scratch_config=mplug.test", "image_size=32", f"image_root={w}", "augment=false",
           f"train_file={w / 'train.json'}", f"output_dir={w / 'rerun'}", "+training.max_steps=2",
           "training.num_epochs=null", "training.per_device_batch_size=4", "training.precision=fp32",
           "training.save_every=null"]  # fmt: skip
    assert main(run) == 0
    first = load_file(w / "rerun" / "model" / "model.safetensors")
    assert main(run) == 0  # same run: resumed at its last step, the model folder written again
    again = load_file(w / "rerun" / "model" / "model.safetensors")
    assert again.keys() == first.keys() and all(torch.equal(v, again[k]) for k, v in first.items())
    (w / "rerun" / "model" / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(run) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to replace it" in err and len(err.splitlines()) == 1
    assert (w / "rerun" / "model" / "notes.txt").read_text() == "mine"
