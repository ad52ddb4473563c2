"""PLUG's models are PALM's assembly; parallel-ready unfused projections; quirks; memory plan; CLI."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from plug_testing import released_state_dict, tiny_config, write_release

import alicemind.plug.model as plug_model
from alicemind.core.cli import main
from alicemind.palm import PalmConfig, PalmForConditionalGeneration
from alicemind.plug import (
    PlugConfig,
    PlugForConditionalGeneration,
    PlugForSequenceClassification,
    PlugTokenizer,
    convert_megatron,
    load_sharded_weights,
    memory_plan,
    unfuse_projections,
)
from alicemind.plug.generation import generate_long, render, slide_context
from alicemind.plug.plan import count_parameters
from alicemind.plug.tokenization import original_detokenize, original_prompt


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("plug")
    config = tiny_config()
    folder = write_release(root, config, released_state_dict(config, seed=3))
    return convert_megatron(folder, root / "model", max_shard_bytes=50_000)


def _ids(rows=2, length=9, seed=0):
    return torch.randint(104, 120, (rows, length), generator=torch.Generator().manual_seed(seed))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference of the finite logits; the padded vocabulary rows must be -inf in both."""
    finite = torch.isfinite(b)
    assert torch.equal(torch.isfinite(a), finite)
    return float((a[finite] - b[finite]).abs().max())


def test_plug_model_is_palm_assembly_not_a_copy():
    assert issubclass(PlugForConditionalGeneration, PalmForConditionalGeneration)
    source = inspect.getsource(plug_model)
    for builder in ("TransformerStack(", "TextEmbeddings(", "MultiHeadAttention(", "nn.Linear("):
        assert builder not in source  # every layer comes from palm's assembly
    c = tiny_config()
    palm = PalmForConditionalGeneration(PalmConfig(**{k: v for k, v in c.to_dict().items() if k != "model_type"}))
    plug = PlugForConditionalGeneration(c)
    assert list(plug.state_dict()) == list(palm.state_dict())  # same modules, same safetensors keys
    plug.load_state_dict(palm.state_dict())
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(plug.eval()(ids, labels=ids).logits, palm.eval()(ids, labels=ids).logits)


def test_unfused_projections_and_slice_loading_keep_the_numbers(converted):
    model = PlugForConditionalGeneration.from_pretrained(converted).double().eval()
    ids = _ids()
    with torch.no_grad():
        want = model(ids, labels=ids).logits
        unfuse_projections(model)
        assert not hasattr(model.encoder.layers[0].self_attn, "qkv_proj")
        assert _max_diff(model(ids, labels=ids).logits, want) < 1e-12
    fresh = unfuse_projections(PlugForConditionalGeneration(PlugConfig.from_json_file(converted / "config.json")))
    load_sharded_weights(fresh, converted)  # reads each unfused q/k/v as its rows of the fused tensor
    with torch.no_grad():
        assert torch.equal(fresh.eval()(ids, labels=ids).logits, unfuse_projections(
            PlugForConditionalGeneration.from_pretrained(converted)).eval()(ids, labels=ids).logits)  # fmt: skip


def test_double_final_norm_flag(converted):
    twice = PlugForConditionalGeneration.from_pretrained(converted).eval()
    once = PlugForConditionalGeneration.from_pretrained(converted, encoder_final_norm_twice=False).eval()
    ids = _ids()
    with torch.no_grad():
        a, b = twice.encode(ids), once.encode(ids)
        assert not torch.allclose(a, b)
        assert torch.allclose(a, once.encoder.final_norm(b), atol=1e-6)


def test_classification_loads_the_encoder_of_a_generation_checkpoint(converted):
    gen = PlugForConditionalGeneration.from_pretrained(converted).eval()
    clf = PlugForSequenceClassification.from_pretrained(converted).eval()
    assert not hasattr(clf, "decoder")
    assert torch.equal(clf.encoder.layers[1].ffn.fc_in.weight, gen.encoder.layers[1].ffn.fc_in.weight)
    ids, labels = _ids(), torch.tensor([0, 1])
    out = clf(ids, labels=labels)
    with torch.no_grad():
        want = clf.classifier.classifiers[0](gen.encode(ids)[:, 0])
    assert out.logits.shape == (2, 2) and torch.allclose(out.logits, want, atol=1e-6)
    assert torch.isclose(out.loss, torch.nn.functional.cross_entropy(want, labels), atol=1e-6)


def test_sliding_window_and_original_text_rules():
    # The generated ids start AT the first [SEP] (overwriting it), then a new [SEP]; the last max_length are kept.
    assert slide_context([101, 5, 6, 102, 0, 0], [7, 8], sep_id=102) == [101, 5, 6, 7, 8, 102]
    assert slide_context([101, 5, 6, 102], [7, 8, 9], sep_id=102, max_length=4) == [6, 7, 8, 9, 102][-4:]
    assert original_prompt("“引号”‘a’——b") == "\"引号”'a’--b"
    assert original_detokenize(["我", "[UNK]", "[UNK]", "##们", "好"]) == "我“们好"


def test_windowed_generation_restarts_the_decoder(converted):
    model = PlugForConditionalGeneration.from_pretrained(converted, initializer_range=0.3).eval()
    config_values = {**model.generation_defaults(), "do_sample": False, "eos_token_id": None}
    from alicemind.core.generation import GenerationConfig, generate

    config = GenerationConfig.from_dict(config_values)
    prompt = [101, 110, 111, 112, 102]
    long = generate_long(model, prompt, config, total_tokens=6, window=3)
    assert len(long) == 6
    first = generate(
        model, torch.tensor([prompt]), None, GenerationConfig.from_dict({**config_values, "max_new_tokens": 3})
    )
    assert long[:3] == first.sequences[0, 1:4].tolist()
    context = torch.tensor([slide_context(prompt, long[:3], 102)])
    second = generate(model, context, None, GenerationConfig.from_dict({**config_values, "max_new_tokens": 3}))
    assert long[3:] == second.sequences[0, 1:4].tolist()
    tokenizer = PlugTokenizer.from_pretrained(converted)
    assert render(tokenizer, [110, 100, 100, 111], original=True) == tokenizer.convert_ids_to_tokens(110) + "“" + (
        tokenizer.convert_ids_to_tokens(111))  # fmt: skip


def test_memory_plan_counts_the_27b_model():
    c = PlugConfig.from_preset("plug.27b")
    h, f, v = c.hidden_size, c.intermediate_size, c.vocab_size
    encoder_layer = 4 * h * h + 4 * h + 2 * f * h + f + h + 4 * h
    decoder_layer = 8 * h * h + 8 * h + 2 * f * h + f + h + 6 * h  # qkv 3, out 1, cross q 1, kv 2, out 1
    embeddings = (v + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h
    expected = embeddings + 24 * encoder_layer + 6 * decoder_layer + 4 * h  # two final norms
    params, block = count_parameters(c)
    assert params == expected and round(params / 1e9, 1) == 26.0
    plans = {(p.mode, p.tp): p for p in memory_plan(c, 8, 32)}
    assert plans["inference", 8].weights == params * 2 / 8  # fp16 weights split 8 ways: 6.05 GiB per V100
    assert plans["inference", 8].fits and not plans["inference", 1].fits
    assert plans["finetune", 8].optimizer == params * 12 / 8
    assert not plans["finetune", 8].fits  # full fine-tuning of 27B does not fit 8 x 32 GB (sofa used CPU offload)


def test_cli_convert_plan_and_generate(tmp_path, capsys):
    config = tiny_config(initializer_range=0.3)
    folder = write_release(tmp_path, config, released_state_dict(config, seed=5))
    convert = ["plug", "convert", str(folder), str(tmp_path / "m"), "--max-shard-gb", "0.0001", "--no-progress"]
    assert main([*convert, "--dtype", "bfloat16"]) == 0
    assert "safetensors files" in capsys.readouterr().out
    from alicemind.plug.convert import iter_sharded_tensors

    assert {t.dtype for _, t in iter_sharded_tensors(tmp_path / "m")} == {torch.bfloat16}
    assert main(["plug", "plan", "--gpus", "8", "--gpu-memory", "32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["mode"], r["tp"]) for r in rows} >= {("inference", 8), ("finetune", 1)}
    (tmp_path / "in.txt").write_text("一丁\n七万\n", encoding="utf-8")
    args = ["plug", "generate", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "in.txt"), "--greedy",
            "--max-new-tokens", "4", "--output", str(tmp_path / "out.txt")]  # fmt: skip
    assert main(args) == 0
    lines = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all(lines)


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["plug", "convert", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint at" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["plug", "convert", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no mp_rank_XX_model_states.pt files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["plug", "plan", "--gpus", "0", "--gpu-memory", "32"]) == 2


def test_finetune_verb_trains_a_converted_model(converted, tmp_path, capsys):
    from alicemind.core.cli import list_recipes, load_recipe

    assert "finetune-dureader-robust" in list_recipes("plug")
    assert load_recipe("plug", "finetune-dureader-robust")["training"]["lr"] == 1e-5
    pairs = ["一丁\t一丁", "七万\t七万"]
    (tmp_path / "train.tsv").write_text("\n".join(pairs * 2) + "\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["plug", "finetune", "--recipe", "finetune-dureader-robust", f"model={converted}",
            f"data.train={tmp_path / 'train.tsv'}", f"data.valid={tmp_path / 'dev.tsv'}", "data.max_target_length=6",
            "training.num_epochs=null", "+training.max_steps=2", "training.per_device_batch_size=2",
            "+training.progress_bar=false", "training.precision=fp32", "+training.device=cpu",
            f"training.output_dir={out}", "generation.num_beams=1", "generation.max_new_tokens=4",
            "generation.min_length=0"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train_loss"] > 0 and set(result["metrics"]) >= {"bleu-1", "bleu-4", "rouge-l"}
    trained = PlugForConditionalGeneration.from_pretrained(out / "final")
    assert trained.config.model_type == "plug" and trained.config.num_hidden_layers == 2
    before = PlugForConditionalGeneration.from_pretrained(converted)
    assert not torch.equal(trained.decoder.layers[0].ffn.fc_in.weight, before.decoder.layers[0].ffn.fc_in.weight)


def test_download_explains_the_application_step_and_list_shows_the_release(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path))
    monkeypatch.delenv("ALICEMIND_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # test_hf_auto sets it for the whole session
    assert main(["plug", "download", "plug.27b"]) == 2
    err = capsys.readouterr().err
    assert "alice-mind.com" in err and "plug_model.tar.gz" in err and str(tmp_path) in err
    assert main(["list"]) == 0
    assert "plug.27b" in capsys.readouterr().out
