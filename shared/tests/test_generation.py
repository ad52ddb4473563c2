"""Generation engine: config, score processors, greedy decoding, sampling and streaming (beam search: *_beam)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from alicemind.core.generation import (
    GenerationConfig,
    apply_repetition_penalty,
    generate,
    length_penalty,
    no_repeat_ngram_mask,
    sampling_logits,
    top_k_filter,
    top_p_filter,
)


def _load_toy():
    import importlib.util
    import sys

    name = "alicemind_generation_toy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_generation_toy.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


toy = _load_toy()
SOURCES = [[3, 4, 5, 6, 7, 8], [9, 10], [4, 4, 11, 3], [5]]
START, EOS, PAD = 1, 2, 0


def _config(**overrides) -> GenerationConfig:
    base = dict(max_new_tokens=12, decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=PAD)
    return GenerationConfig(**{**base, **overrides})


def _rows(out, prompt_len: int = 1) -> list[list[int]]:
    """Each output row cut to its real length (prompt + generated), so pad ids never enter comparisons."""
    return [out.sequences[i, : prompt_len + int(n)].tolist() for i, n in enumerate(out.lengths)]


def _repeats_ngram(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


# ---- config ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_beams": 2, "do_sample": True}, "beam sampling is not supported"),
        ({"num_beams": 2, "num_return_sequences": 3}, r"num_return_sequences \(3\) cannot exceed num_beams \(2\)"),
        ({"num_return_sequences": 2}, "greedy decoding returns one sequence"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"length_penalty_style": "fairseq"}, "length_penalty_style must be 'gnmt' or 'plain'"),
    ],
)
def test_config_rejects_bad_settings(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**kwargs)


def test_config_lengths_and_dict_round_trip() -> None:
    assert GenerationConfig().resolve_max_new_tokens(1) == 20
    assert GenerationConfig(max_length=6).resolve_max_new_tokens(2) == 4  # max_length counts the decoder prompt
    assert GenerationConfig(max_length=6, max_new_tokens=9).resolve_max_new_tokens(2) == 9
    with pytest.raises(ValueError, match="leaves no room"):
        GenerationConfig(max_length=3).resolve_max_new_tokens(3)
    with pytest.raises(ValueError, match="min_length=5 exceeds the 4 tokens"):
        GenerationConfig(max_new_tokens=4, min_length=5).resolve_max_new_tokens(1)
    config = _config(eos_token_id=(2, 7), num_beams=3, length_penalty=0.6, no_repeat_ngram_size=3)
    again = GenerationConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict() and again.eos_ids == [2, 7]
    with pytest.raises(ValueError, match=r"unknown GenerationConfig fields: \['beam_size'\]"):
        GenerationConfig.from_dict({"beam_size": 4})


def test_length_penalty_styles() -> None:
    assert float(length_penalty(5, 1.0, "gnmt")) == pytest.approx(10 / 6)
    assert float(length_penalty(7, 0.6, "gnmt")) == pytest.approx(2.0**0.6)
    assert float(length_penalty(5, 0.5, "plain")) == pytest.approx(math.sqrt(5))
    assert float(length_penalty(9, 0.0, "gnmt")) == 1.0


# ---- processors -----------------------------------------------------------------------------------------------


def test_top_p_keeps_exactly_the_nucleus() -> None:
    probs = torch.tensor([0.05, 0.5, 0.1, 0.2, 0.15])  # shuffled so the filter must map back from sorted order
    logits = probs.log().unsqueeze(0)
    kept = top_p_filter(logits, 0.8).softmax(-1)[0]  # 0.5 + 0.2 + 0.15 = 0.85 is the first mass >= 0.8
    expected = torch.tensor([0.0, 0.5, 0.0, 0.2, 0.15]) / 0.85
    assert torch.allclose(kept, expected, atol=1e-6)
    assert torch.equal(torch.isfinite(top_p_filter(logits, 0.3))[0], torch.tensor([0, 1, 0, 0, 0]).bool())
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_top_k_and_temperature() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0], [0.0, -2.0, 5.0, 4.0]])
    assert torch.equal(torch.isfinite(top_k_filter(logits, 2)), torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]]).bool())
    scaled = sampling_logits(logits, temperature=2.0, top_k=0, top_p=1.0)
    assert torch.allclose(scaled, logits / 2.0)


def test_no_repeat_ngram_mask_matches_a_plain_loop() -> None:
    history = torch.tensor([[1, 2, 3, 1, 2], [5, 5, 5, 5, 5], [1, 2, 3, 4, 5]])
    assert no_repeat_ngram_mask(history, 3, 8)[0].nonzero().flatten().tolist() == [3]  # "1 2 _" was "1 2 3"
    assert no_repeat_ngram_mask(history, 2, 8)[1].nonzero().flatten().tolist() == [5]
    assert not no_repeat_ngram_mask(history, 2, 8)[2].any()
    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 4):
        random_history = torch.randint(0, 4, (16, 20), generator=gen)
        mask = no_repeat_ngram_mask(random_history, n, 4)
        for row, tokens in zip(mask, random_history.tolist()):
            assert set(row.nonzero().flatten().tolist()) == toy.banned_by_ngram(tokens, n)


def test_repetition_penalty_shrinks_seen_tokens_only() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 0]]), 2.0)
    assert torch.equal(out, torch.tensor([[1.0, -2.0, 0.5, 1.0]]))


# ---- greedy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_greedy_equals_naive_full_recomputation(seed) -> None:
    model = toy.ToySeq2Seq(seed=seed)
    ids, mask = toy.padded_batch(SOURCES)
    out = generate(model, ids, mask, _config())
    for row, source in enumerate(SOURCES):
        assert _rows(out)[row] == toy.naive_greedy(model, torch.tensor(source), [START], 12, EOS)
        # scores are the summed log-probs of the generated tokens under the model
        tokens = torch.tensor([_rows(out)[row]])
        logp = model.full_logits(torch.tensor([source]), torch.ones(1, len(source)), tokens).log_softmax(-1)
        expected = logp[0, :-1].gather(1, tokens[0, 1:, None]).sum()
        assert float(out.scores[row]) == pytest.approx(float(expected), abs=1e-4)


def test_greedy_batched_equals_one_by_one_and_drops_finished_rows() -> None:
    model = toy.ToySeq2Seq(seed=5)  # rows of this seed end after 3, 3, 4 and 12 tokens
    ids, mask = toy.padded_batch(SOURCES)
    batched = generate(model, ids, mask, _config())
    assert sorted(batched.lengths.tolist()) == [3, 3, 4, 12]
    assert model.decode_batch_sizes == [4, 4, 4, 2, 1, 1, 1, 1, 1, 1, 1, 1]  # finished rows leave the batch
    for row, source in enumerate(SOURCES):
        single = generate(model, torch.tensor([source]), torch.ones(1, len(source)), _config())
        assert _rows(single)[0] == _rows(batched)[row]
        assert float(single.scores[0]) == pytest.approx(float(batched.scores[row]), abs=1e-5)
        assert batched.sequences[row, 1 + int(batched.lengths[row]) :].eq(PAD).all()


def test_greedy_continues_a_decoder_prompt() -> None:
    model = toy.ToySeq2Seq(seed=3)
    ids, mask = toy.padded_batch(SOURCES)
    prompt = torch.tensor([[START, 7, 9]] * len(SOURCES))
    out = generate(model, ids, mask, _config(max_new_tokens=None, max_length=10), decoder_input_ids=prompt)
    assert out.lengths.max() <= 7  # max_length counts the 3 prompt tokens
    for row, source in enumerate(SOURCES):
        assert _rows(out, prompt_len=3)[row] == toy.naive_greedy(model, torch.tensor(source), [START, 7, 9], 7, EOS)


@pytest.mark.parametrize("min_length", [0, 1, 4])
def test_min_length_is_exact(min_length) -> None:
    model = toy.ToySeq2Seq(seed=1)
    with torch.no_grad():
        model.lm_head.bias[EOS] += 30.0  # EOS wins whenever it is allowed
    ids, mask = toy.padded_batch(SOURCES)
    for config in (_config(min_length=min_length), _config(min_length=min_length, do_sample=True)):
        out = generate(model, ids, mask, config, generator=torch.Generator().manual_seed(0))
        assert out.lengths.tolist() == [min_length + 1] * len(SOURCES)
        assert out.sequences[:, min_length + 1].eq(EOS).all()


@pytest.mark.parametrize("n", [2, 3])
def test_greedy_never_repeats_a_blocked_ngram(n) -> None:
    model = toy.ToySeq2Seq(seed=0)  # greedy loops ("1 9 1 9 ...") without blocking
    ids, mask = toy.padded_batch(SOURCES)
    assert any(_repeats_ngram(t, n) for t in _rows(generate(model, ids, mask, _config(max_new_tokens=20))))
    out = generate(model, ids, mask, _config(max_new_tokens=20, no_repeat_ngram_size=n))
    assert not any(_repeats_ngram(t, n) for t in _rows(out))


@pytest.mark.parametrize("sample", [False, True])
def test_a_row_with_every_token_banned_ends_with_eos(sample) -> None:
    # Unigram blocking with EOS banned by min_length uses up the 12-token vocabulary: START is in the prompt, so
    # the 10 other non-EOS tokens come once each, then every token is banned and the row must end with EOS.
    model = toy.ToySeq2Seq(seed=0)
    ids, mask = toy.padded_batch(SOURCES)
    config = _config(max_new_tokens=30, min_length=25, no_repeat_ngram_size=1, do_sample=sample)
    out = generate(model, ids, mask, config, generator=torch.Generator().manual_seed(0))
    for row, score in zip(_rows(out), out.scores.tolist()):
        assert sorted(row[1:-1]) == [t for t in range(12) if t not in (START, EOS)]
        assert row[-1] == EOS
        assert math.isfinite(score)  # the model's own log-probability of that EOS, not -inf


def test_repetition_penalty_in_greedy_matches_a_manual_loop() -> None:
    model = toy.ToySeq2Seq(seed=0)
    ids, mask = toy.padded_batch(SOURCES)
    plain = generate(model, ids, mask, _config())
    out = generate(model, ids, mask, _config(repetition_penalty=3.0))
    assert _rows(out) != _rows(plain)
    for row, source in enumerate(SOURCES):
        tokens = [START]
        while len(tokens) <= 12 and tokens[-1] != EOS:
            logits = model.full_logits(torch.tensor([source]), torch.ones(1, len(source)), torch.tensor([tokens]))[
                0, -1
            ]
            for seen in set(tokens):
                logits[seen] = logits[seen] / 3.0 if logits[seen] > 0 else logits[seen] * 3.0
            tokens.append(int(logits.argmax()))
        assert _rows(out)[row] == tokens


# ---- sampling -------------------------------------------------------------------------------------------------


def test_top_k_one_sampling_equals_greedy() -> None:
    model = toy.ToySeq2Seq(seed=3)
    ids, mask = toy.padded_batch(SOURCES)
    greedy = generate(model, ids, mask, _config())
    sampled = generate(
        model, ids, mask, _config(do_sample=True, top_k=1, temperature=0.7), generator=torch.Generator().manual_seed(1)
    )
    assert _rows(sampled) == _rows(greedy)


def test_sampling_is_seeded_and_draws_from_the_filtered_distribution() -> None:
    model = toy.ToySeq2Seq(seed=2)
    source = torch.tensor([[3, 4, 5]])
    config = _config(max_new_tokens=1, do_sample=True, temperature=1.5, top_k=6, top_p=0.9, num_return_sequences=4000)
    first = generate(model, source, torch.ones_like(source), config, generator=torch.Generator().manual_seed(7))
    again = generate(model, source, torch.ones_like(source), config, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first.sequences, again.sequences)
    logits = model.full_logits(source, torch.ones_like(source), torch.tensor([[START]]))[:, -1]
    target = sampling_logits(logits, 1.5, 6, 0.9).softmax(-1)[0]
    counts = torch.bincount(first.sequences[:, 1], minlength=target.numel()).float() / 4000
    assert torch.all(counts[target == 0] == 0)  # nothing outside the top-k / nucleus is ever drawn
    assert (counts - target).abs().max() < 0.03  # ~4 standard errors at 4000 draws


# ---- streaming and errors -------------------------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.steps: list[tuple[list[int], list[bool]]] = []
        self.ended = 0

    def put(self, new_token_ids, finished) -> None:
        self.steps.append((new_token_ids.tolist(), finished.tolist()))

    def end(self) -> None:
        self.ended += 1


@pytest.mark.parametrize("sample", [False, True])
def test_streamer_receives_exactly_the_generated_tokens(sample) -> None:
    model = toy.ToySeq2Seq(seed=5)
    ids, mask = toy.padded_batch(SOURCES)
    config = _config(do_sample=sample, num_return_sequences=2 if sample else 1)
    collector, calls = _Collector(), []
    out = generate(
        model, ids, mask, config, streamer=collector, generator=torch.Generator().manual_seed(0) if sample else None
    )
    generate(model, ids, mask, config, streamer=lambda t, f: calls.append(t.tolist()), generator=None)
    assert collector.ended == 1 and len(collector.steps) == int(out.lengths.max()) and calls
    streamed = [[] for _ in range(out.sequences.shape[0])]
    done = [False] * len(streamed)
    for tokens, finished in collector.steps:
        for row, (token, is_done) in enumerate(zip(tokens, finished)):
            if not done[row]:
                streamed[row].append(token)
            else:
                assert token == PAD and is_done  # rows already done stay done and send pad
            done[row] = is_done
    assert all(done)
    assert streamed == [tokens[1:] for tokens in _rows(out)]


def test_generate_reports_misuse_clearly() -> None:
    model = toy.ToySeq2Seq()
    ids, mask = toy.padded_batch(SOURCES)
    with pytest.raises(ValueError, match="streaming is only supported for greedy"):
        generate(model, ids, mask, _config(num_beams=2), streamer=lambda t, f: None)
    with pytest.raises(ValueError, match=r"decoder_input_ids must be \[batch=4, P>=1\]"):
        generate(model, ids, mask, _config(), decoder_input_ids=torch.ones(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="set decoder_start_token_id"):
        generate(model, ids, mask, GenerationConfig(eos_token_id=EOS))
    with pytest.raises(TypeError, match=r"missing \['decode_step', 'reorder_cache'\]"):
        generate(_Half(), ids, mask, _config())


class _Half:
    def encode(self, input_ids, attention_mask):
        return input_ids

    def init_decoder_cache(self, encoder_hidden, encoder_mask, max_length):
        return None
