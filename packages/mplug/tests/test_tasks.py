"""VQA and grounding on generated shapes through the runner's training path (core's Trainer, fp32)."""

from __future__ import annotations

import random

import torch
from mplug_testing import COLOURS, SHAPES, draw_shape, processor, shape_dataset, tiny_config, tokenizer
from PIL import Image

from alicemind.mplug import MPlugForGrounding, MPlugForVQA
from alicemind.mplug.evaluation import vqa_accuracy
from alicemind.mplug.training import train

QUIET = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _training(steps, lr):
    return dict(max_steps=steps, lr=lr, per_device_batch_size=12, precision="fp32", progress_bar=False,
                log_every=1, scheduler="constant", seed=0)  # fmt: skip


def test_vqa_answers_the_colour_question_on_held_out_images():
    torch.manual_seed(5)
    model = MPlugForVQA(tiny_config(**QUIET))
    records = [{"image": im, "question": "what color is the shape ?", "answer": [c] * 10}
               for im, c, _, _ in shape_dataset(96, seed=11)]  # fmt: skip
    train(model, records, processor(), "vqa", _training(80, 3e-3), augment=False)
    proc, held_out = processor(), shape_dataset(12, seed=12)
    q_ids, q_mask = proc.text(["what color is the shape ?"] * 12)
    got = proc.decode(model.eval().generate(proc.images([im for im, *_ in held_out]), q_ids, q_mask, num_beams=2))
    assert vqa_accuracy(got, [[c] * 10 for _, c, _, _ in held_out]) >= 0.75, got
    # ranking over the candidate list agrees with the colours too
    a_ids, a_mask = proc.text(list(COLOURS), eos=True)
    best = model.rank_answers(proc.images([im for im, *_ in held_out]), q_ids, q_mask, a_ids, a_mask)
    assert sum(list(COLOURS)[b] == c for b, (_, c, _, _) in zip(best.tolist(), held_out, strict=True)) >= 9


def test_grounding_loss_falls_and_decodes_only_bin_tokens(tmp_path):
    torch.manual_seed(6)
    tok = tokenizer(with_box_tokens=True)
    model = MPlugForGrounding(tiny_config(vocab_size=tok.vocab_size, **QUIET))
    bins = tok.convert_tokens_to_ids([f"[unused{i}]" for i in range(340, 677)])
    model.set_box_vocabulary(tok.convert_tokens_to_ids("[unused339]"), bins)
    rng, records = random.Random(0), []
    for i in range(24):
        image = draw_shape("red", SHAPES[i % 3], rng)
        path = tmp_path / f"{i}.png"
        canvas = Image.new("RGB", (64, 64), (128, 128, 128))
        x, y = rng.choice([(0, 0), (32, 32)])  # the shape in the top-left or the bottom-right quarter
        canvas.paste(image, (x, y))
        canvas.save(path)
        records.append({"image": str(path), "text": f"the {SHAPES[i % 3]}", "bbox": [x, y, x + 32, y + 32]})
    trainer = train(model, records, processor(tok), "grounding", _training(40, 3e-3), augment=False)
    losses = [h["grounding"] for h in trainer.state.log_history if "grounding" in h]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    proc = processor(tok)
    t_ids, t_mask = proc.text([r["text"] for r in records[:4]])
    predicted = model.eval().predict_bins(proc.images([r["image"] for r in records[:4]]), t_ids, t_mask)
    assert predicted.shape == (4, 4) and bool(((predicted >= 0) & (predicted < 337)).all())
