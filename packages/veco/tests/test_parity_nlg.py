"""NLG parity: the fairseq transformer VECO NLG is, read by ours, computes what BART (scale_embedding=True) does."""

from __future__ import annotations

import pytest
import torch
import transformers
import veco_releases as rel

from alicemind.core.generation import GenerationConfig, generate
from alicemind.veco import VecoForConditionalGeneration
from alicemind.veco.convert import bart_config_dict, to_bart_state_dict

TOL = 1e-5
KEEP = list(range(18, 24))
DICT_ROWS = 4 + len(rel.dictionary_lines())


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = rel.write_fairseq_folder(tmp_path_factory.mktemp("veco") / "veco-large")
    # The file this test wrote itself; its Namespace args need full unpickling.
    state = torch.load(folder / "model.pt", weights_only=False)["model"]
    return folder, state


@pytest.fixture(scope="module")
def models(release):
    folder, state = release
    ours = VecoForConditionalGeneration.from_pretrained(folder).eval()
    config = transformers.BartConfig(**bart_config_dict(ours.config))
    bart = transformers.BartForConditionalGeneration(config).eval()
    missing, unexpected = bart.load_state_dict(rel.fairseq_to_bart(state, KEEP, DICT_ROWS), strict=True)
    assert not missing and not unexpected
    return ours, bart


def test_release_reads_with_top_six_decoder_layers_and_no_mask_row(release, models):
    folder, state = release
    ours, _ = models
    assert ours.source_format == "fairseq-veco"
    c = ours.config
    assert (c.decoder_layers, c.num_hidden_layers, c.vocab_size, c.hidden_size) == (6, 2, DICT_ROWS, rel.H)
    assert c.scale_embedding and c.is_encoder_decoder and c.max_position_embeddings == rel.POSITIONS
    # Kept layer 0 is the file's layer 18, layer 5 its layer 23.
    assert torch.equal(
        ours.decoder.layers[0].cross_attn.q_proj.weight, state["decoder.layers.18.encoder_attn.q_proj.weight"]
    )
    assert torch.equal(ours.decoder.layers[5].ffn.fc_out.bias, state["decoder.layers.23.fc2.bias"])
    assert torch.equal(ours.word_embeddings.weight, state["encoder.embed_tokens.weight"][:DICT_ROWS])
    assert ours.decoder_embeddings.word_embeddings is ours.encoder_embeddings.word_embeddings


def test_our_bart_mapping_equals_the_independent_one(release, models):
    _, state = release
    ours, _ = models
    expected = rel.fairseq_to_bart(state, KEEP, DICT_ROWS)
    mapped = to_bart_state_dict(ours)
    assert sorted(mapped) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(mapped[key], value), key


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, DICT_ROWS - 3, (3, 9), generator=g)
    src[:, -2], src[:, -1] = 2, DICT_ROWS - 2  # ... </s> [en]
    src[2, 6:] = 1  # a shorter, right-padded row
    src[2, 4], src[2, 5] = 2, DICT_ROWS - 2
    tgt = torch.randint(4, DICT_ROWS - 3, (3, 7), generator=g)
    tgt[:, 0] = DICT_ROWS - 3  # [de] as the decoder BOS
    return src, src.ne(1).long(), tgt


def test_teacher_forced_logits_agree_with_bart(models):
    ours, bart = models
    src, mask, tgt = _batch()
    with torch.no_grad():
        a = ours(src, mask, decoder_input_ids=tgt).logits
        b = bart(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
    assert a.shape == b.shape == (3, 7, DICT_ROWS)
    assert (a - b).abs().max() < TOL
    assert a.std() > 0.1  # not a degenerate comparison


def test_greedy_outputs_agree_with_bart(models):
    # A random model repeats one token; the CTRL repetition penalty (the same rule on both sides) makes the
    # outputs varied, so the comparison covers many steps of cached decoding.
    ours, bart = models
    src, mask, _ = _batch(1)
    tag = DICT_ROWS - 3
    ours_out = generate(
        ours,
        src,
        mask,
        GenerationConfig(
            decoder_start_token_id=tag, eos_token_id=tag, pad_token_id=1, max_new_tokens=12, repetition_penalty=4.0
        ),
    )
    hf_config = transformers.GenerationConfig(
        decoder_start_token_id=tag, eos_token_id=tag, pad_token_id=1, max_new_tokens=12, num_beams=1,
        do_sample=False, suppress_tokens=[1], repetition_penalty=4.0, forced_eos_token_id=None, forced_bos_token_id=None,
    )  # fmt: skip
    with torch.no_grad():
        theirs = bart.generate(input_ids=src, attention_mask=mask, generation_config=hf_config)
    for row in range(src.shape[0]):
        n = int(ours_out.lengths[row])
        mine = ours_out.sequences[row, : 1 + n].tolist()
        hf_row = theirs[row].tolist()
        assert mine == hf_row[: len(mine)]
        assert all(t == 1 for t in hf_row[len(mine) :])  # transformers stopped where we did
        assert len(set(mine)) > 2  # the outputs are not trivially one token


def test_our_folder_round_trips(tmp_path, models):
    ours, _ = models
    ours.save_pretrained(tmp_path / "ours")
    again = VecoForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    assert again.source_format == "alicemind"
    src, mask, tgt = _batch(2)
    with torch.no_grad():
        assert torch.equal(
            again(src, mask, decoder_input_ids=tgt).logits, ours(src, mask, decoder_input_ids=tgt).logits
        )
