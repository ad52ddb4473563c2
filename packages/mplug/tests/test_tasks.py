"""VQA and grounding on generated shapes through the runner's training path (core's Trainer, fp32)."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from mplug_testing import COLOURS, SHAPES, draw_shape, processor, shape_dataset, tiny_config, tokenizer
from PIL import Image

from alicemind.mplug import MPlugForGrounding, MPlugForVQA
from alicemind.mplug.evaluation import vqa_accuracy
from alicemind.mplug.grounding import cxcywh_to_corners, generalized_box_iou
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


def test_generalized_iou_against_hand_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    # overlap 1 of union 7 in a 3x3 hull; identical; disjoint with a 3x1 hull of which 1 is uncovered
    expected = torch.tensor([1 / 7 - (9 - 7) / 9, 1.0, 0.0 - (3 - 2) / 3])
    assert torch.allclose(generalized_box_iou(a, b), expected)
    assert torch.equal(cxcywh_to_corners(torch.tensor([[0.5, 0.5, 0.2, 0.4]])), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))


def test_grounding_loss_is_weighted_as_released():
    """With targets, each bin token's CE is scaled by the L1 distance of the argmax box's coordinate (clamped to 5)
    and by 1 - GIoU, as ``model_grounding_mplug.py``; a prediction on the target box costs nothing."""
    torch.manual_seed(8)
    tok = tokenizer(with_box_tokens=True)
    model = MPlugForGrounding(tiny_config(vocab_size=tok.vocab_size, **QUIET)).eval()
    bins = tok.convert_tokens_to_ids([f"[unused{i}]" for i in range(340, 677)])
    model.set_box_vocabulary(tok.convert_tokens_to_ids("[unused339]"), bins)
    proc = processor(tok)
    pixels = proc.images([im for im, *_ in shape_dataset(3, seed=1)])
    t_ids, t_mask = proc.text(["the circle", "the square", "the triangle"])
    box_ids = torch.tensor([bins[10:14], bins[100:104], bins[200:204]])
    with torch.no_grad():
        plain = model(pixels, t_ids, t_mask, box_ids)
        predicted = torch.tensor([[bins.index(int(t)) for t in row] for row in plain.logits.argmax(-1)]) / 336
        targets = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.6, 0.2, 0.5], [0.7, 0.2, 0.3, 0.3]])
        weighted = model(pixels, t_ids, t_mask, box_ids, box_targets=targets)
        on_target = model(pixels, t_ids, t_mask, box_ids, box_targets=predicted)
    ce = F.cross_entropy(plain.logits.transpose(1, 2), box_ids, reduction="none")
    giou = generalized_box_iou(cxcywh_to_corners(predicted), cxcywh_to_corners(targets))
    expected = (ce * (predicted - targets).abs() * (1 - giou)[:, None]).mean()
    assert torch.allclose(weighted.loss, expected, atol=1e-6) and not torch.allclose(weighted.loss, plain.loss)
    assert float(on_target.loss) == 0.0
