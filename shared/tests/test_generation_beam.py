"""Beam search: brute-force and exhaustive references, batching, beam 1 = greedy, bans and length limits."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import pytest
import torch

from alicemind.core.generation import GenerationConfig, beam_search, generate, length_penalty


def _load_toy():
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
    base = dict(max_new_tokens=12, decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=PAD, num_beams=4)
    return GenerationConfig(**{**base, **overrides})


def _rows(out) -> list[list[int]]:
    return [out.sequences[i, : 1 + int(n)].tolist() for i, n in enumerate(out.lengths)]


BEAM_CASES = [  # (toy seed, config overrides)
    (0, dict(num_beams=4, length_penalty=0.6, num_return_sequences=2)),
    (5, dict(num_beams=3, length_penalty=1.0, length_penalty_style="plain", early_stopping=False)),
    (0, dict(num_beams=4, length_penalty=1.5, early_stopping=False, no_repeat_ngram_size=2, min_length=2)),
    (5, dict(num_beams=2, length_penalty=0.0, no_repeat_ngram_size=3)),
    (0, dict(num_beams=5, length_penalty=-0.5, early_stopping=False, num_return_sequences=2)),
    # Here a live beam overtakes a finished one after the row already holds num_beams hypotheses: only the exact
    # bound of early_stopping=False (not "stop when its current score cannot win") finds it.
    (6, dict(num_beams=3, length_penalty=2.0, length_penalty_style="plain", early_stopping=False, max_new_tokens=16)),
    # PreSumm's / PALM's rule: a row stops when its top candidate is EOS.
    (5, dict(num_beams=3, length_penalty=2.0, beam_stopping="top_beam")),
    (0, dict(num_beams=4, length_penalty=0.6, beam_stopping="top_beam", min_length=2, no_repeat_ngram_size=2)),
]


@pytest.mark.parametrize(("seed", "settings"), BEAM_CASES)
def test_beam_matches_brute_force_reference(seed, settings) -> None:
    model = toy.ToySeq2Seq(seed=seed)
    ids, mask = toy.padded_batch(SOURCES)
    config = _config(**settings)
    out = generate(model, ids, mask, config)
    count = config.num_return_sequences
    for row, source in enumerate(SOURCES):
        expected = toy.reference_beam(model, torch.tensor(source), START, config, config.max_new_tokens)[:count]
        got = slice(row * count, (row + 1) * count)
        assert _rows(out)[got] == [tokens for _, tokens in expected]
        assert out.sequence_scores[got].tolist() == pytest.approx([score for score, _ in expected], abs=1e-4)


def test_wide_beam_is_exhaustive_search() -> None:
    """With more beams than candidates nothing is pruned: the top hypotheses are the best of all sequences."""
    model = toy.ToySeq2Seq(vocab=4, seed=4)
    start, eos, max_new, alpha = 0, 3, 3, 0.8
    config = GenerationConfig(
        max_new_tokens=max_new,
        decoder_start_token_id=start,
        eos_token_id=eos,
        num_beams=36,  # >= 9 live prefixes x 4 tokens at the last step
        num_return_sequences=6,
        length_penalty=alpha,
    )
    for source in ([1, 2, 0], [2]):
        src = torch.tensor([source])
        out = generate(model, src, torch.ones_like(src), config)
        every = []
        for length in range(1, max_new + 1):
            for body in itertools.product(range(4), repeat=length):
                if eos in body[:-1] or (length < max_new and body[-1] != eos):
                    continue  # EOS only last; only the length limit may end without EOS
                tokens = torch.tensor([[start, *body]])
                logp = model.full_logits(src, torch.ones_like(src), tokens)[0, :-1].log_softmax(-1)
                total = float(logp.gather(1, tokens[0, 1:, None]).sum())
                every.append((total / float(length_penalty(length, alpha)), [start, *body]))
        every.sort(key=lambda item: -item[0])
        assert len(every) == 40  # 1 + 3 + 9 sequences ending in EOS, 27 cut at the limit
        assert _rows(out) == [tokens for _, tokens in every[:6]]
        assert out.sequence_scores.tolist() == pytest.approx([score for score, _ in every[:6]], abs=1e-4)


def test_beam_of_one_equals_greedy() -> None:
    for seed in (0, 3, 5):
        model = toy.ToySeq2Seq(seed=seed)
        ids, mask = toy.padded_batch(SOURCES)
        greedy = generate(model, ids, mask, _config(num_beams=1))
        config = _config(num_beams=1)
        with torch.no_grad():  # the beam search code path itself, which generate() only takes for num_beams > 1
            cache = model.init_decoder_cache(model.encode(ids, mask), mask, 13)
            beam = beam_search(model, cache, torch.full((len(SOURCES), 1), START), config, 12)
        assert _rows(beam) == _rows(greedy)
        assert torch.allclose(beam.scores, greedy.scores, atol=1e-5)


def test_batched_beam_equals_one_by_one_and_drops_finished_rows() -> None:
    model = toy.ToySeq2Seq(seed=5)
    ids, mask = toy.padded_batch(SOURCES)
    config = _config(num_return_sequences=2)
    batched = generate(model, ids, mask, config)
    sizes = model.decode_batch_sizes
    assert sizes[0] == len(SOURCES)  # the decoder prompt runs once per source, before the beams are made
    assert sizes[1] == 4 * len(SOURCES) and sizes[-1] < sizes[1]  # finished source rows leave the batch
    assert all(a >= b for a, b in zip(sizes[1:], sizes[2:])) and all(s % 4 == 0 for s in sizes[1:])
    for row, source in enumerate(SOURCES):
        single = generate(model, torch.tensor([source]), torch.ones(1, len(source)), config)
        assert _rows(single) == _rows(batched)[2 * row : 2 * row + 2]
        assert torch.allclose(single.sequence_scores, batched.sequence_scores[2 * row : 2 * row + 2], atol=1e-5)


def test_beam_outputs_are_ranked_and_consistent() -> None:
    model = toy.ToySeq2Seq(seed=0)
    ids, mask = toy.padded_batch(SOURCES)
    config = _config(num_return_sequences=4, length_penalty=0.9)
    out = generate(model, ids, mask, config)
    ranked = out.sequence_scores.view(len(SOURCES), 4)
    assert torch.all(ranked[:, :-1] >= ranked[:, 1:])
    assert torch.allclose(out.sequence_scores, out.scores / length_penalty(out.lengths, 0.9), atol=1e-6)
    for tokens, n in zip(out.sequences.tolist(), out.lengths.tolist()):
        assert EOS not in tokens[1:n] and (tokens[n] == EOS or n == 12)  # EOS only at the end, or cut at the limit


@pytest.mark.parametrize("min_length", [0, 1, 4])
def test_beam_min_length_is_exact(min_length) -> None:
    model = toy.ToySeq2Seq(seed=1)
    with torch.no_grad():
        model.lm_head.bias[EOS] += 30.0  # EOS wins whenever it is allowed
    ids, mask = toy.padded_batch(SOURCES)
    out = generate(model, ids, mask, _config(min_length=min_length, num_return_sequences=2))
    lengths = out.lengths.view(len(SOURCES), 2)
    assert lengths[:, 0].tolist() == [min_length + 1] * len(SOURCES) and lengths.min() >= min_length + 1


@pytest.mark.parametrize("n", [2, 3])
def test_beam_never_repeats_a_blocked_ngram(n) -> None:
    model = toy.ToySeq2Seq(seed=0)
    ids, mask = toy.padded_batch(SOURCES)

    def repeats(tokens: list[int]) -> bool:
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return len(grams) != len(set(grams))

    assert any(repeats(t) for t in _rows(generate(model, ids, mask, _config(num_return_sequences=4))))
    out = generate(model, ids, mask, _config(num_return_sequences=4, no_repeat_ngram_size=n))
    assert not any(repeats(t) for t in _rows(out))


def test_several_eos_ids_and_length_limit() -> None:
    model = toy.ToySeq2Seq(seed=3)
    ids, mask = toy.padded_batch(SOURCES)
    out = generate(model, ids, mask, _config(eos_token_id=[2, 7], max_new_tokens=6))
    for tokens, n in zip(out.sequences.tolist(), out.lengths.tolist()):
        assert 1 <= n <= 6
        assert not {2, 7} & set(tokens[1:n]) and (tokens[n] in (2, 7) or n == 6)


def test_top_beam_stopping_changes_when_a_row_stops() -> None:
    """``beam_stopping="top_beam"`` (PALM/models/predictor.py, _fast_translate_batch: "End condition is top beam is
    finished") stops a row at the first step whose best candidate is EOS, whatever else is finished, and returns
    the best finished hypothesis so far; the default waits for ``num_beams`` finished hypotheses."""
    settings = dict(num_beams=3, length_penalty=2.0)
    runs = {}
    for rule in ("num_beams", "top_beam"):
        for source in ([3, 4, 5, 6, 7, 8], [5]):
            model = toy.ToySeq2Seq(seed=5)
            out = generate(
                model, torch.tensor([source]), torch.ones(1, len(source)), _config(beam_stopping=rule, **settings)
            )
            runs[rule, source[0]] = (len(model.decode_batch_sizes), _rows(out)[0])
    # Source 1: the top candidate is EOS at step 4, so top_beam stops there with a shorter, worse output; the
    # default keeps searching and finds a better-scored hypothesis by step 11.
    assert runs["top_beam", 3] == (4, [START, 8, 0, EOS])
    assert runs["num_beams", 3] == (11, [START, 8, 8, 9, 10, 11, 10, 10, 7, 0, 0, EOS])
    # Source 2: three hypotheses are finished at step 9 (the default stops) but the top candidate never is EOS,
    # so top_beam runs to the length limit, where a live beam without EOS wins.
    assert runs["num_beams", 5] == (9, [START, 8, 7, 9, 10, 10, 10, 10, 7, EOS])
    assert runs["top_beam", 5] == (12, [START, 8, 7, 9, 10, 10, 10, 10, 7, 7, 7, 7, 7])
    with pytest.raises(ValueError, match="beam_stopping must be"):
        _config(beam_stopping="first")
    assert GenerationConfig.from_dict(_config(beam_stopping="top_beam").to_dict()).beam_stopping == "top_beam"
