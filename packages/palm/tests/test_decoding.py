"""Incremental decoding equals full recomputation; generation through core's engine is consistent."""

from __future__ import annotations

import pytest
import torch

from alicemind.core.generation import GenerationConfig, generate
from alicemind.palm import PalmConfig, PalmForConditionalGeneration


def test_cached_steps_match_full_recomputation(arch, make_model, make_source):
    model = make_model(arch)
    ids, mask = make_source(model)
    g = torch.Generator().manual_seed(3)
    decoder_ids = torch.randint(5, model.config.vocab_size, (ids.shape[0], 7), generator=g)
    decoder_ids[:, 0] = model.config.start_token_id
    with torch.no_grad():
        full = model(ids, mask, decoder_ids).logits
        hidden = model.encode(ids, mask)
        cache = model.init_decoder_cache(hidden, mask, max_length=3)  # grows past its capacity on the way
        steps = [model.decode_step(decoder_ids[:, :3], cache)]  # a multi-token prompt first
        steps += [model.decode_step(decoder_ids[:, t : t + 1], cache) for t in range(3, 7)]
    incremental = torch.cat(steps, dim=1)
    assert incremental.shape == full.shape
    assert (incremental - full).abs().max().item() < 1e-5


def test_padding_does_not_change_a_row(arch, make_model, make_source):
    model = make_model(arch)
    ids, mask = make_source(model)
    dec = torch.full((1, 4), model.config.start_token_id)
    with torch.no_grad():
        batched = model(ids, mask, dec.expand(ids.shape[0], -1)).logits
        n = int(mask[2].sum())
        alone = model(ids[2:3, :n], mask[2:3, :n], dec).logits
    assert (batched[2:3] - alone).abs().max().item() < 1e-5


def test_padding_free_encoder_matches_the_padded_one(arch, make_model, make_source, monkeypatch):
    from alicemind.core.layers import stack

    packs = []
    original = stack.PackedBatch.from_mask
    monkeypatch.setattr(stack.PackedBatch, "from_mask", lambda m: packs.append(m) or original(m))
    model = make_model(arch)
    assert model.config.padding_free  # the default: packed encoder on padded batches
    ids, mask = make_source(model)
    real = mask.bool()
    with torch.no_grad():
        packed = model.encode(ids, mask)
        assert len(packs) == 1  # the packed path ran
        model.encoder.padding_free = False
        padded = model.encode(ids, mask)
        out_padded = generate(model, ids, mask, _config(model, max_new_tokens=6, num_beams=2))
        model.encoder.padding_free = True
        out_packed = generate(model, ids, mask, _config(model, max_new_tokens=6, num_beams=2))
    assert (packed[real] - padded[real]).abs().max().item() < 1e-5
    assert torch.equal(out_packed.sequences, out_padded.sequences)


def _greedy_without_cache(model, ids, mask, steps: int) -> torch.Tensor:
    c = model.config
    out = torch.full((ids.shape[0], 1), c.start_token_id)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(ids, mask, out).logits[:, -1]
            out = torch.cat([out, logits.argmax(-1, keepdim=True)], dim=1)
    return out


def _config(model, **kw) -> GenerationConfig:
    return GenerationConfig(**{**model.generation_defaults(), "eos_token_id": None, **kw})


def test_greedy_matches_naive_loop(arch, make_model, make_source):
    model = make_model(arch)
    ids, mask = make_source(model)
    out = generate(model, ids, mask, _config(model, max_new_tokens=8))
    assert torch.equal(out.sequences, _greedy_without_cache(model, ids, mask, 8))


def test_beam_of_one_is_greedy(arch, make_model, make_source):
    model = make_model(arch)
    ids, mask = make_source(model)
    greedy = generate(model, ids, mask, _config(model, max_new_tokens=6))
    beam = generate(model, ids, mask, _config(model, max_new_tokens=6, num_beams=1))
    assert torch.equal(greedy.sequences, beam.sequences)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_batched_equals_one_by_one(arch, make_model, make_source, num_beams):
    model = make_model(arch)
    ids, mask = make_source(model)
    eos = model.config.eos_token_id
    cfg = _config(model, max_new_tokens=6, num_beams=num_beams, eos_token_id=eos, length_penalty=0.6)
    batched = generate(model, ids, mask, cfg)
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        alone = generate(model, ids[row : row + 1, :n], mask[row : row + 1, :n], cfg)
        width = alone.sequences.shape[1]
        assert torch.equal(batched.sequences[row, :width], alone.sequences[0])
        assert (batched.sequences[row, width:] == cfg.resolve_pad_token_id()).all()
        assert torch.allclose(batched.scores[row], alone.scores[0], atol=1e-5)


def test_real_vocab_size_limits_generation(make_model, make_source):
    model = make_model("sofa-zh", real_vocab_size=40)
    ids, mask = make_source(model)
    out = generate(model, ids, mask, _config(model, max_new_tokens=10))
    assert int(out.sequences[:, 1:].max()) < 40


def test_pointer_generator_needs_source_ids(make_model, make_source):
    model = make_model("presumm-en-pgen")
    ids, mask = make_source(model)
    hidden = model.encode(ids, mask)
    with pytest.raises(ValueError, match="source ids"):
        model.init_decoder_cache(hidden.clone(), mask, 4)
    cache = model.init_decoder_cache(hidden, mask, 4, source_ids=ids)
    logprobs = model.decode_step(torch.full((ids.shape[0], 1), model.config.start_token_id), cache)
    # The mixture is a normalised distribution in log space.
    assert torch.allclose(logprobs.exp().sum(-1), torch.ones(ids.shape[0], 1), atol=1e-5)


@pytest.mark.parametrize("index", [[2, 0, 0, 1], [0, 0, 1, 1, 2, 2], [1, 0, 2, 1, 0, 2]])
def test_reorder_cache_moves_every_row(arch, make_model, make_source, index):
    model = make_model(arch)
    ids, mask = make_source(model)
    start = torch.full((ids.shape[0], 1), model.config.start_token_id)
    steps = torch.randint(5, model.config.vocab_size, (len(index), 2), generator=torch.Generator().manual_seed(4))
    index_t = torch.tensor(index)
    with torch.no_grad():
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 4)
        model.decode_step(start, cache)
        cache = model.reorder_cache(cache, index_t)  # across sources: drop, repeat, permute
        model.decode_step(steps[:, :1], cache)
        got = model.decode_step(steps[:, 1:], cache)
        full = model(ids[index_t], mask[index_t], torch.cat([start[index_t], steps], dim=1)).logits[:, -1:]
    # Pointer-generator outputs are log-probabilities down to log(1e-20) = -46: compare relatively too.
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)


def test_reorder_within_sources_keeps_cross_attention(arch, make_model, make_source):
    """Beam search's per-step reorder (rows permuted among beams of one source) takes the no-copy path."""
    model = make_model(arch)
    ids, mask = make_source(model)
    beams = torch.tensor([0, 0, 1, 1, 2, 2])
    swap = torch.tensor([1, 0, 2, 3, 5, 4])
    prefix = torch.randint(5, model.config.vocab_size, (6, 2), generator=torch.Generator().manual_seed(5))
    prefix[:, 0] = model.config.start_token_id
    nxt = torch.randint(5, model.config.vocab_size, (6, 1), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        cache = model.reorder_cache(model.init_decoder_cache(model.encode(ids, mask), mask, 4), beams)
        model.decode_step(prefix, cache)
        cross = cache.layers[0].cross_kv[0]
        cache = model.reorder_cache(cache, swap)
        assert cache.layers[0].cross_kv[0] is cross  # not copied
        got = model.decode_step(nxt, cache)
        rows = beams[swap]
        full = model(ids[rows], mask[rows], torch.cat([prefix[swap], nxt], dim=1)).logits[:, -1:]
    # Pointer-generator outputs are log-probabilities down to log(1e-20) = -46: compare relatively too.
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)


def test_beams_keep_one_copy_of_their_source_in_cross_attention(arch, make_model, make_source, monkeypatch):
    from alicemind.palm import model as palm_model

    model = make_model(arch)
    ids, mask = make_source(model)
    with torch.no_grad():
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 4)
        cache = model.reorder_cache(cache, torch.arange(3).repeat_interleave(4))  # 3 sources x 4 beams
    per_source = model.copy_gate is None  # the pointer-generator's copy distribution needs them per row
    assert cache.layers[0].cross_kv[0].shape[0] == (3 if per_source else 12)
    assert cache.encoder_mask.shape[0] == (3 if per_source else 12)

    config = _config(model, max_new_tokens=6, num_beams=4, num_return_sequences=2, eos_token_id=7)
    shared = generate(model, ids, mask, config)
    monkeypatch.setattr(palm_model, "group_rows_by_source", lambda rows: None)  # one copy per beam instead
    copied = generate(model, ids, mask, config)
    assert torch.equal(shared.sequences, copied.sequences) and torch.equal(shared.lengths, copied.lengths)
    torch.testing.assert_close(shared.scores, copied.scores, atol=1e-5, rtol=1e-5)


def test_sources_leaving_and_ungrouped_reorders_after_beams(arch, make_model, make_source):
    """Grouped cross rows survive a source leaving (copied down) and a reorder that breaks the groups."""
    model = make_model(arch)
    ids, mask = make_source(model)
    start = model.config.start_token_id
    g = torch.Generator().manual_seed(7)
    reorders = [
        torch.arange(3).repeat_interleave(2),  # 3 sources x 2 beams
        torch.tensor([1, 0, 4, 4, 5, 5]),  # beams swapped, source 1 duplicated, source 2 to both its beams
        torch.tensor([4, 5, 0, 1]),  # source 1 leaves; sources 2 and 0 stay, in a new order
        torch.tensor([2, 3, 0]),  # unequal groups (source 0 twice, source 2 once): one cross row per decoder row
    ]
    rows = torch.arange(3)  # the source of each current decoder row
    history = torch.full((3, 1), start)
    with torch.no_grad():
        cache = model.init_decoder_cache(model.encode(ids, mask), mask, 8)
        model.decode_step(history, cache)
        for index in reorders:
            cache = model.reorder_cache(cache, index)
            rows, history = rows[index], history[index]
            step = torch.randint(5, model.config.vocab_size, (len(index), 1), generator=g)
            got = model.decode_step(step, cache)
            history = torch.cat([history, step], dim=1)
            full = model(ids[rows], mask[rows], history).logits[:, -1:]
            # Pointer-generator outputs are log-probabilities down to log(1e-20) = -46: compare relatively too.
            torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
    assert cache.layers[0].cross_kv[0].shape[0] == 3  # ungrouped at the end: one per row


def test_too_many_new_tokens_are_refused_before_any_work(arch, make_model, make_source, monkeypatch):
    from alicemind.core.layers import SequenceTooLongError

    model = make_model(arch)
    ids, mask = make_source(model)
    limit = model.max_decoder_positions
    fits = generate(model, ids[:1], mask[:1], _config(model, max_new_tokens=limit - 1))  # + the start token
    assert fits.sequences.shape[1] == limit
    monkeypatch.setattr(model, "encode", lambda *a, **k: pytest.fail("encoded despite an impossible length"))
    with pytest.raises(SequenceTooLongError, match=f"needs {limit + 1} positions; the model's decoder has {limit}"):
        generate(model, ids, mask, _config(model, max_new_tokens=limit))


# ---- fidelity with the original code: decode clean-up, special-token text, beam stopping ---------------------


@pytest.fixture(scope="module")
def english_tokenizer(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer as BpeTrainer

    from alicemind.palm.tokenization import PalmEnglishTokenizer

    corpus = ["Hello , world . It 's fine , is n't it ? I do not know ! We 're sure , I 'm told ; they 've gone ."] * 50
    folder = tmp_path_factory.mktemp("palm-bpe")
    trainer = BpeTrainer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer.train_from_iterator(corpus, vocab_size=300, min_frequency=2, special_tokens=specials, show_progress=False)
    trainer.save_model(str(folder))
    return PalmEnglishTokenizer.from_files(folder / "vocab.json", folder / "merges.txt")


def test_english_decode_cleans_up_spaces_like_the_original(english_tokenizer):
    # transformers 2.1's clean_up_tokenization, which PALM's predictor gets from RobertaTokenizer.decode.
    tok = english_tokenizer
    raw = "Hello , world . It 's fine , is n't it ? I do not know ! We 're sure , I 'm told ; they 've gone ' ok ' ."
    ids = tok.encode(raw)
    assert tok.decode(ids, clean_up_tokenization_spaces=False) == raw
    # The rules run in the original's order: " ." goes first, so "' ." keeps the space before the quote.
    cleaned = "Hello, world. It's fine, isn't it? I don't know! We're sure, I'm told ; they've gone'ok '."
    assert tok.decode(ids) == cleaned
    assert tok.batch_decode([ids, tok.encode("a , b")]) == [cleaned, "a, b"]
    assert tok.batch_decode([ids], clean_up_tokenization_spaces=False) == [raw]


def test_palm_tokenizers_match_special_token_text_like_the_original(english_tokenizer, tmp_path):
    from alicemind.palm.tokenization import PalmChineseTokenizer, PalmEnglishTokenizer, load_tokenizer

    # transformers 2.1 (PALM EN) and sofa's HF BertTokenizer (PALM ZH) both match special tokens in the text:
    # sofa's DuReader data is "answer[SEP]context".
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[", "]", "s", "##e", "##p", *"答案文章"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    zh = PalmChineseTokenizer.from_vocab_file(tmp_path / "vocab.txt")
    assert zh.split_special_tokens is False
    assert zh.tokenize("答案[SEP]文章") == ["答", "案", "[SEP]", "文", "章"]
    as_text = PalmChineseTokenizer.from_vocab_file(tmp_path / "vocab.txt", split_special_tokens=True)
    assert as_text.tokenize("答[SEP]") == ["答", "[", "s", "##e", "##p", "]"]
    en = english_tokenizer
    assert en.split_special_tokens is False
    assert en.encode("It <mask> fine", add_special_tokens=False).count(en.mask_token_id) == 1
    # A generic RoBERTa / BERT folder loads as PALM's class, so these defaults and the clean-up apply.
    from alicemind.core.tokenization import ByteLevelBPETokenizer, WordPieceTokenizer

    generic_en = ByteLevelBPETokenizer.from_vocab_and_merges(
        en.backend.get_vocab(with_added_tokens=False), [tuple(m.split()) for m in _merges(en)]
    )
    generic_en.save_pretrained(tmp_path / "en")
    WordPieceTokenizer.from_vocab_file(tmp_path / "vocab.txt").save_pretrained(tmp_path / "zh")
    assert type(load_tokenizer(tmp_path / "en")) is PalmEnglishTokenizer
    assert type(load_tokenizer(tmp_path / "zh")) is PalmChineseTokenizer


def _merges(tok) -> list[str]:
    import json

    return [" ".join(m) if isinstance(m, list) else m for m in json.loads(tok.backend.to_str())["model"]["merges"]]


def test_recipes_stop_beams_as_the_original():
    from alicemind.core.cli import list_recipes, load_recipe

    # The recipes that restate the original PALM / sofa runs.
    names = [name for name in list_recipes("palm") if name in ("generate", "seq2seq") or name.startswith("finetune-")]
    with_generation = [name for name in names if "generation" in load_recipe("palm", name)]
    assert {"generate", "finetune-cnndm", "finetune-lcsts", "finetune-dureader-qg"} <= set(with_generation)
    for name in with_generation:
        config = GenerationConfig.from_dict(load_recipe("palm", name)["generation"])
        assert config.beam_stopping == "top_beam", name  # PreSumm/PALM and sofa: a source ends with its top beam
    assert GenerationConfig().beam_stopping == "num_beams"  # core's own default is unchanged
    # Generation without a recipe (the Python API, `palm generate` defaults) stops as the original too.
    model = PalmForConditionalGeneration(PalmConfig.from_preset("palm.ch.tiny"))
    assert GenerationConfig.from_dict(model.generation_defaults()).beam_stopping == "top_beam"
