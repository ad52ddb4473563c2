"""The skip-connected fusion's stride as released, the tied LM head, and cached decoding through core."""

from __future__ import annotations

import torch
from mplug_testing import tiny_config

from alicemind.core.layers.attention import build_attention_mask
from alicemind.mplug import MPlugForCaption, MPlugForVQA
from alicemind.mplug.modules import FusionEncoder


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    text, image = torch.randn(2, 5, 32, generator=g), torch.randn(2, 7, 32, generator=g)
    text_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return text, text_mask, image, torch.ones(2, 7, dtype=torch.long)


def test_connected_layer_updates_image_residually_and_co_attention_does_not():
    torch.manual_seed(0)
    fusion = FusionEncoder(tiny_config(fusion_layers=2, stride_layer=1)).eval()
    assert [fusion.is_connected(k) for k in range(2)] == [False, True]
    text, text_mask, image, image_mask = _inputs()
    with torch.no_grad():
        out_image, out_text = fusion(text, text_mask, image, image_mask)
        # by hand: layer 0 co-attention (text only), layer 1 one self-attention over [image; text]
        t = fusion.layers[0](text, mask=build_attention_mask(text_mask, 5),
                             encoder_states=image, encoder_mask=build_attention_mask(image_mask, 5))  # fmt: skip
        joint = fusion.layers[1](torch.cat([image, t], 1), mask=build_attention_mask(torch.cat([image_mask, text_mask], 1), 12),
                                 skip_cross_attention=True)  # fmt: skip
    torch.testing.assert_close(out_image, image + joint[:, :7], rtol=0, atol=0)
    torch.testing.assert_close(out_text, joint[:, 7:], rtol=0, atol=0)


def test_large_stride_never_connects_so_image_passes_unchanged():
    fusion = FusionEncoder(tiny_config(num_hidden_layers=12, fusion_layers=6, stride_layer=6)).eval()
    assert not any(fusion.is_connected(k) for k in range(6))
    text, text_mask, image, image_mask = _inputs(1)
    with torch.no_grad():
        out_image, out_text = fusion(text, text_mask, image, image_mask)
    assert torch.equal(out_image, image) and not torch.allclose(out_text, text)
    base = FusionEncoder(tiny_config(num_hidden_layers=12, fusion_layers=6, stride_layer=3))
    assert [base.is_connected(k) for k in range(6)] == [False, False, False, True, False, False]


def test_lm_head_is_tied_and_cached_beam1_equals_full_greedy():
    torch.manual_seed(3)
    model = MPlugForCaption(tiny_config()).eval()
    dec = model.text_decoder
    assert dec.cls.decoder.weight is dec.bert.embeddings.word_embeddings.weight
    pixels = torch.randn(2, 3, 32, 32)
    cached = model.generate(pixels, num_beams=1, max_new_tokens=6, eos_token_id=None)
    image, mask = model.encode_image(pixels)
    ids = torch.full((2, 1), model.config.bos_token_id)
    with torch.no_grad():
        for _ in range(6):  # no cache: the whole prefix is re-run each step, as the release does
            logits = dec(ids, torch.ones_like(ids), image, mask)
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(cached, ids)


def test_vqa_rank_answers_prefers_the_likeliest_candidate():
    torch.manual_seed(4)
    model = MPlugForVQA(tiny_config()).eval()
    pixels, q = torch.randn(2, 3, 32, 32), torch.tensor([[1, 10, 11], [1, 12, 13]])
    answers = torch.tensor([[1, 20, 2], [1, 21, 2], [1, 22, 2]])
    best = model.rank_answers(pixels, q, torch.ones_like(q), answers, torch.ones_like(answers))
    with torch.no_grad():
        states, mask = model.fuse(pixels, q, torch.ones_like(q))
        scores = torch.stack([
            torch.stack([
                -torch.log_softmax(model.text_decoder(a[None], torch.ones(1, 3, dtype=torch.long), states[i : i + 1],
                                                      mask[i : i + 1])[0, :-1], -1).gather(1, a[1:, None]).sum()
                for a in answers
            ]) for i in range(2)
        ])  # fmt: skip
    assert torch.equal(best, scores.argmin(1))


def test_scst_step_raises_the_likelihood_of_the_rewarded_beam():
    from mplug_testing import processor

    from alicemind.mplug.modules import sequence_loss

    torch.manual_seed(7)
    model = MPlugForCaption(
        tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, vision_attention_dropout=0.0)
    ).eval()  # fmt: skip  (no visn dropout)
    proc_vocab = processor().tokenizer.vocab_size
    with torch.no_grad():
        model.text_decoder.cls.bias[:5] = -1e4  # only word tokens (5..20): every beam decodes to words
        model.text_decoder.cls.bias[proc_vocab:] = -1e4
    proc = processor()
    pixels = torch.randn(2, 3, 32, 32)
    beams = model.generate(pixels, num_beams=3, num_return_sequences=3, max_new_tokens=4, eos_token_id=None)
    texts = proc.decode(beams)
    # image 0's first beam is its reference (the top reward); image 1's reference is a caption no beam has, so a
    # second image gives CIDEr its corpus (idf) without competing rewards
    refs = [[texts[0]], ["yellow triangle picture of"]]
    assert texts[0] not in texts[1:3]

    def nll_of_first_beams():
        with torch.no_grad():
            image, mask = model.encode_image(pixels)
            rows = beams[:1]
            return sequence_loss(
                model.text_decoder(rows, torch.ones_like(rows), image[:1], mask[:1]), rows, torch.ones_like(rows)
            )

    before = nll_of_first_beams()
    out = model.scst_loss(pixels, refs, proc.decode, num_beams=3, max_new_tokens=4, eos_token_id=None)
    assert float(out.metrics["reward"]) > 0 and float(out.loss.detach()) != 0.0
    out.loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 1e-4 * p.grad
    assert bool((nll_of_first_beams() < before).all())
