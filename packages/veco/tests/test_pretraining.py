"""CA-MLM pre-training: every one of the paper's four loss terms falls; the stack then serves NLU and NLG."""

from __future__ import annotations

import random

import pytest
import torch
from veco_spm import train_spm

from alicemind.veco import VecoForConditionalGeneration, VecoForPreTraining, VecoModel, VecoTokenizer
from alicemind.veco.pretraining import (
    LOSS_TERMS,
    PretrainingDataConfig,
    encode_pair_instances,
    init_nlg_from_pretraining,
)
from alicemind.veco.runner import pretrain, pretraining_losses

WORDS = {"en": "the cat sees a dog".split(), "de": "die katze sieht einen hund".split()}


def _write_data(root):
    rng = random.Random(0)
    pairs, docs = [], []
    for _ in range(120):
        n = rng.randint(2, 5)
        idx = [rng.randrange(5) for _ in range(n)]
        pairs.append((" ".join(WORDS["en"][i] for i in idx), " ".join(WORDS["de"][i] for i in idx)))
    for _ in range(20):
        docs.append("\n".join(" ".join(rng.choice(WORDS["en"]) for _ in range(4)) for _ in range(4)))
    (root / "pairs.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    (root / "corpus.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return pairs


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pt")
    pairs = _write_data(root)
    spm_file = train_spm(root / "spm", vocab_size=300)
    tok = VecoTokenizer(spm_file)
    recipe = {
        "tokenizer": str(spm_file), "pairs": str(root / "pairs.tsv"), "corpus": str(root / "corpus.txt"),
        "model": {"preset": "veco.tiny", "config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                                                    "max_position_embeddings": 66}},
        "data": {"max_length": 16, "mlm_probability": 0.3},
        "training": {"max_steps": 120, "per_device_batch_size": 16, "lr": 2e-3, "scheduler": "constant_with_warmup",
                     "warmup_steps": 10, "precision": "fp32", "seed": 0, "save_every": 0, "progress_bar": False,
                     "log_every": 40, "output_dir": str(root / "run")},
    }  # fmt: skip
    held_out = encode_pair_instances(tok, pairs[:48], 16)
    data = PretrainingDataConfig(max_length=16, mlm_probability=0.3)
    torch.manual_seed(0)
    from alicemind.veco import VecoConfig

    config = VecoConfig.from_preset("veco.tiny", vocab_size=len(tok), **recipe["model"]["config"])
    torch.manual_seed(0)
    before_model = VecoForPreTraining(config)
    before = pretraining_losses(before_model, tok, held_out, data)
    result = pretrain(recipe)
    model = VecoForPreTraining.from_pretrained(result["output_dir"])
    after = pretraining_losses(model, tok, held_out, data)
    return result, model, tok, before, after


def test_every_loss_term_falls(pretrained):
    result, _, _, before, after = pretrained
    assert result["instances"] > 100
    for term in LOSS_TERMS:
        assert after[term] < 0.8 * before[term], (term, before[term], after[term])
    logged = [h for h in result["history"] if "ca_mlm_y" in h]
    assert logged and all(set(LOSS_TERMS) <= set(h) for h in logged)


def test_cross_attention_is_used_by_the_ca_terms(pretrained):
    _, _, _, _, after = pretrained
    # The CA terms see the other side: with its translation at hand, x is predicted better than from x^ alone.
    assert after["ca_mlm_x"] < after["mlm_x"] and after["ca_mlm_y"] < after["mlm_y"]


def test_the_stack_unplugged_for_nlu_and_initialising_the_nlg_decoder(pretrained, tmp_path):
    result, model, tok, _, _ = pretrained
    nlu = VecoModel.from_pretrained(result["output_dir"]).eval()
    ids = torch.tensor([tok("the cat sees a dog")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(nlu(ids).last_hidden_state, model.eval().roberta(ids).last_hidden_state, atol=1e-6)
    nlg = init_nlg_from_pretraining(model, decoder_layers=[1])
    assert isinstance(nlg, VecoForConditionalGeneration) and nlg.config.decoder_layers == 1
    src = model.roberta.encoder.layers[1]
    assert torch.equal(nlg.decoder.layers[0].cross_attn.q_proj.weight, src.cross_attn.q_proj.weight)
    assert torch.equal(nlg.decoder.layers[0].ffn.fc_in.weight, src.ffn.fc_in.weight)
    assert torch.equal(
        nlg.encoder.layers[0].self_attn.k_proj.weight, model.roberta.encoder.layers[0].self_attn.k_proj.weight
    )
    assert torch.equal(nlg.word_embeddings.weight, model.roberta.embeddings.word_embeddings.weight)
    with pytest.raises(ValueError, match="past the pre-trained stack's 2 layers"):
        init_nlg_from_pretraining(model, decoder_layers=[2])
