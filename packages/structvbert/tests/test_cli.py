"""The ``alicemind structvbert`` verbs end to end on tiny files: convert, build-features, pretrain --help, reproduce,
list, download (offline), and one-line errors."""

from __future__ import annotations

import json

import torch
from structvbert_testing import release_state_dict, synthetic_vqa, write_release, write_tsv

from alicemind.core.cli import main
from alicemind.structvbert import RegionFeatures, StructVBertForPreTraining, StructVBertForVQA, StructVBertTokenizer


def test_convert_release_to_ours_with_tokenizer(tmp_path, capsys):
    state = release_state_dict()
    release = write_release(tmp_path / "pretrained_model", state)
    assert main(["structvbert", "convert", str(release), str(tmp_path / "ours")]) == 0
    assert "structvbert-release format" in capsys.readouterr().out
    model = StructVBertForPreTraining.from_pretrained(tmp_path / "ours")
    assert model.source_format == "alicemind"
    assert model.obj_predict_head.decoder_dict["attr"].weight.equal(state["obj_predict_head.decoder_dict.attr.weight"])
    tok = StructVBertTokenizer.from_pretrained(tmp_path / "ours")
    assert tok("What is the cat")["input_ids"] == [2, 5, 6, 7, 12, 3]
    # VQA with the answer-table remap, from the command line.
    (tmp_path / "label2ans.json").write_text(json.dumps(["dog", "cat"]))
    (tmp_path / "all_ans.json").write_text(
        json.dumps([{"ans": f"x{i}"} for i in range(5)] + [{"ans": "cat"}, {"ans": "dog"}])
    )
    args = ["structvbert", "convert", str(release), str(tmp_path / "vqa"), "--model-class", "vqa", "--answers",
            str(tmp_path / "label2ans.json"), "--answer-table", str(tmp_path / "all_ans.json")]  # fmt: skip
    assert main(args) == 0
    vqa = StructVBertForVQA.from_pretrained(tmp_path / "vqa")
    assert vqa.config.answers == ["dog", "cat"]
    assert vqa.logit_fc[3].weight[0].equal(state["answer_head.logit_fc.3.weight"][6])
    assert vqa.logit_fc[3].weight[1].equal(state["answer_head.logit_fc.3.weight"][5])


def test_build_features_and_bad_input_exit_2(tmp_path, capsys):
    data = synthetic_vqa(tmp_path / "d", num_images=4)
    assert (
        main(["structvbert", "build-features", str(tmp_path / "cache"), str(data / "features.tsv"), "--no-progress"])
        == 0
    )
    assert "4 images, 16-d region features" in capsys.readouterr().out
    bad = write_tsv(tmp_path / "bad.tsv", ["img\t1\t1\t\t\t\t\t3\tAAAA\tnot-base64!"])
    assert main(["structvbert", "build-features", str(tmp_path / "c2"), str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.tsv:1" in err[0] and "base64" in err[0]
    assert not (tmp_path / "c2").exists()
    assert main(["structvbert", "convert", str(tmp_path / "nowhere"), str(tmp_path / "o")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_reproduce_table_beside_the_published_numbers(tmp_path, capsys):
    data = tmp_path / "data"
    vqa = synthetic_vqa(data / "vqa", num_images=12)
    (vqa / "minival.json").write_text((vqa / "valid.json").read_text())
    (vqa / "nominival.json").write_text("[]")
    nlvr2 = data / "nlvr2"
    nlvr2.mkdir()
    (nlvr2 / "features.tsv").write_text((vqa / "features.tsv").read_text())
    (nlvr2 / "vocab.txt").write_text((vqa / "vocab.txt").read_text())
    pairs = [{"identifier": f"p{i}", "img0": f"img{i}", "img1": f"img{i + 1}", "sent": "same color", "label": i % 2}
             for i in range(10)]  # fmt: skip
    for split in ("train", "valid"):
        (nlvr2 / f"{split}.json").write_text(json.dumps(pairs))
    release = write_release(tmp_path / "pretrained_model", release_state_dict())
    quick = ["training.max_steps=2", "training.num_epochs=null", "training.per_device_batch_size=4",
             "training.log_every=0", "training.save_every=0", "training.precision=fp32", "max_objects=8",
             "eval_batch_size=8"]  # fmt: skip
    for folder in (vqa, nlvr2):  # each task reads data_dir/feature_cache (the recipes' default)
        RegionFeatures.build(folder / "features.tsv", folder / "feature_cache", progress_bar=False)
    args = ["structvbert", "reproduce", "reproduce-structvbert-readme", "--checkpoint", str(release), "--data-dir",
            str(data), "--output", str(tmp_path / "rep"), "--no-progress", *quick]  # fmt: skip
    assert main(args) == 0
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert results["vqa"]["published"] == 71.80 and results["nlvr2"]["published"] == 77.66
    vqa_metrics = json.loads((tmp_path / "rep" / "vqa" / "eval_results.json").read_text())["metrics"]
    assert results["vqa"]["score"] == 100 * vqa_metrics["soft_accuracy"]
    table = (tmp_path / "rep" / "results.md").read_text()
    assert "| vqa | soft_accuracy (minival) |" in table and "| 77.66 |" in table


def test_list_help_and_offline_download(tmp_path, capsys, monkeypatch):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "structvbert" in out and "structvbert.en.base" in out and "vqa" in out
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    assert main(["structvbert", "download", "structvbert.en.base", "--offline"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    try:
        main(["structvbert", "pretrain", "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    assert "KEY=VALUE" in capsys.readouterr().out
    assert torch.get_num_threads() == 1


def test_pretrain_verb_runs_the_shipped_recipe_with_stages_overridden(tmp_path, capsys):
    from structvbert_corpus import write_corpus

    write_corpus(tmp_path)
    stages = "[{name: text, text_only: true, tasks: [mlm], training: {max_steps: 2}}, {name: objects-4, max_objects: 4, tasks: [mlm, mrfr, mrc, itm, qa], training: {max_steps: 2}}]"
    args = ["structvbert", "pretrain", "--recipe", "pretrain-progressive", "--no-progress",
            f"corpus={tmp_path / 'pairs.json'}", f"features=[{tmp_path / 'features.tsv'}]",
            f"feature_cache={tmp_path / 'cache'}", f"tokenizer={tmp_path}", "scratch_config=structvbert.test",
            f"output_dir={tmp_path / 'pt'}", f"stages={stages}",
            "training.per_device_batch_size=8", "training.precision=fp32", "training.save_every=0"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "objects-4 itm_loss:" in out and "text mlm_loss:" in out
    saved = json.loads((tmp_path / "pt" / "stages.json").read_text())
    assert [s["stage"] for s in saved] == ["text", "objects-4"]
