"""Short runs on generated coloured shapes: every pre-training loss falls; a caption fine-tune names colour and
shape on held-out images; retrieval R@1 is far above chance. Core's Trainer, fp32, one thread."""

from __future__ import annotations

import math

import pytest
import torch
from mplug_testing import processor, shape_dataset, tiny_config

from alicemind.mplug import MPlugForCaption, MPlugForPreTraining, MPlugForRetrieval
from alicemind.mplug.evaluation import recall_at_k, retrieval_scores
from alicemind.mplug.training import train

# A short run: a fast momentum encoder (0.5, not 0.995), so the ITC targets and queue follow within 100 steps.
FAST = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, momentum=0.5)


def _records(n, seed):
    return [{"image": im, "caption": f"a {c} {s}", "idx": k} for im, c, s, k in shape_dataset(n, seed)]


def _training(steps, lr, batch=12, **extra):
    return dict(max_steps=steps, lr=lr, per_device_batch_size=batch, precision="fp32", progress_bar=False,
                log_every=1, scheduler="constant", seed=0, max_grad_norm=1.0, **extra)  # fmt: skip


def _first_last(history, key, n=5):
    values = [h[key] for h in history if key in h]
    return sum(values[:n]) / n, sum(values[-n:]) / n


def test_every_pretraining_loss_falls():
    torch.manual_seed(0)
    model = MPlugForPreTraining(tiny_config(**FAST))
    # idx groups pairs with the same caption (ITC positives), as the release groups captions of one image
    trainer = train(model, _records(48, 0), processor(), "pretrain", _training(100, 1e-3), augment=False)
    for key in ("itc", "mlm", "prefix"):
        first, last = _first_last(trainer.state.log_history, key)
        assert last < 0.8 * first, (key, first, last)
    # ITM (1 positive : 2 negatives) only reaches the label prior's entropy in a run this short (see README).
    first, last = _first_last(trainer.state.log_history, "itm")
    prior = -(math.log(1 / 3) / 3 + 2 * math.log(2 / 3) / 3)
    assert last < first and last < prior + 0.01, (first, last, prior)


@pytest.fixture(scope="module")
def caption_model():
    torch.manual_seed(1)
    model = MPlugForCaption(tiny_config(**FAST))
    train(model, _records(96, 1), processor(), "caption", _training(240, 3e-3), augment=False)
    return model.eval()


def test_caption_finetune_names_colour_and_shape_on_held_out_images(caption_model):
    proc = processor()
    held_out = shape_dataset(24, seed=99)
    pixels = proc.images([im for im, *_ in held_out])
    captions = proc.decode(caption_model.generate(pixels, num_beams=3, max_new_tokens=6))
    right = sum(f"{c} {s}" in text for text, (_, c, s, _) in zip(captions, held_out, strict=True))
    assert right >= 20, captions


def test_retrieval_r1_far_above_chance():
    torch.manual_seed(2)
    model = MPlugForRetrieval(tiny_config(**FAST))
    train(model, _records(96, 2), processor(), "retrieval", _training(150, 2e-3), augment=False)
    model.eval()
    proc = processor()
    held_out = shape_dataset(12, seed=7)  # one image of each of the 12 colour-shape pairs
    pixels = proc.images([im for im, *_ in held_out])
    ids, mask = proc.text([f"a {c} {s}" for _, c, s, _ in held_out])
    i2t, t2i = retrieval_scores(model, pixels, ids, mask, k_test=4)
    truth = [{i} for i in range(12)]
    r_i2t, r_t2i = recall_at_k(i2t, truth), recall_at_k(t2i, truth)
    assert r_i2t[1] >= 0.5 and r_t2i[1] >= 0.5, (r_i2t, r_t2i)  # chance is 1/12
