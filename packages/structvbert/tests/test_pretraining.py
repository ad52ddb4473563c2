"""A short progressive pre-training run: a text-only stage, then two image-text stages with growing region caps,
each mixing its tasks; every stage's held-out losses fall, image-text matching included. Plus the harder-masking
helpers and the choice of image-text matching negatives."""

from __future__ import annotations

import json
import random

import numpy as np
from structvbert_corpus import write_corpus
from structvbert_testing import TINY

from alicemind.structvbert.data import RegionCollator
from alicemind.structvbert.pretraining import read_corpus, run_pretraining
from alicemind.structvbert.pretraining_data import PretrainCollator, box_iou, choose_regions, mask_words, word_spans
from alicemind.structvbert.regions import RegionFeatures
from alicemind.structvbert.tokenization import StructVBertTokenizer


def test_progressive_stages_each_lower_their_losses(tmp_path):
    write_corpus(tmp_path, num_images=96)
    text = [
        f"the {c} {s} is on the {side}"
        for c in ("red", "blue", "green")
        for s in ("cat", "dog")
        for side in ("left", "right")
    ]
    (tmp_path / "text.txt").write_text("\n".join(text * 3) + "\n")
    training = dict(num_epochs=1, per_device_batch_size=16, lr=2e-3, warmup_ratio=0.1, scheduler="linear", weight_decay=0.01,
                    adam_eps=1e-6, max_grad_norm=5.0, seed=8, precision="fp32", log_every=10, save_every=0,
                    progress_bar=False)  # fmt: skip
    tasks = ["mlm", "mrfr", "mrc", "itm", "qa"]
    recipe = dict(
        corpus=str(tmp_path / "pairs.json"), text_corpus=str(tmp_path / "text.txt"), features=[str(tmp_path / "features.tsv")],
        feature_cache=str(tmp_path / "cache"), tokenizer=str(tmp_path), scratch_config="structvbert.test",
        # BERT's 0.02 init suits 768 wide; at 32 wide it starts attention near uniform and image-text matching
        # (which needs a word to find its region) on a plateau of ~700 steps even alone. 0.2 ~ 1/sqrt(32) binds here.
        model_config={**TINY, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                      "initializer_range": 0.2},
        output_dir=str(tmp_path / "pt"), max_text_length=12, eval_examples=48, pad_to_batch=True,
        masking=dict(word_mask_rate=0.3, obj_mask_rate=0.3, overlap_iou=0.5, mismatch_prob=0.5),
        stages=[
            {"name": "text", "text_only": True, "tasks": ["mlm"], "training": {"max_steps": 40}},
            {"name": "objects-4", "max_objects": 4, "tasks": tasks, "training": {"max_steps": 250}},
            {"name": "objects-8", "max_objects": 8, "tasks": tasks, "training": {"max_steps": 350, "lr": 1e-3}},
        ],
        training=training,
    )  # fmt: skip
    result = run_pretraining(recipe, progress_bar=False)
    by_stage = {s.name: s for s in result.stages}
    assert set(by_stage["text"].final) == {"mlm_loss"}
    assert by_stage["text"].num_examples == 36 and by_stage["objects-4"].num_examples == 192 - 48
    assert set(by_stage["objects-4"].final) == {"mlm_loss", "feat_loss", "obj_loss", "attr_loss", "itm_loss", "qa_loss"}
    for stage in result.stages:
        for name, final in stage.final.items():
            assert final < stage.initial[name], (stage.name, name, stage.initial[name], final)
        if "itm_loss" in stage.final:  # clearly, not by a hair: matching is learnt, not only its label prior
            assert stage.final["itm_loss"] < 0.9 * stage.initial["itm_loss"], (stage.name, stage.final)
    saved = json.loads((tmp_path / "pt" / "stages.json").read_text())
    assert [s["stage"] for s in saved] == ["text", "objects-4", "objects-8"]
    assert (result.model_dir / "model.safetensors").is_file() and (result.model_dir / "vocab.txt").is_file()


def test_whole_word_and_overlapping_region_masking():
    assert word_spans(["[CLS]", "play", "##ing", "cat", "##s", "on"]) == [[0], [1, 2], [3, 4], [5]]
    ids = [2, 10, 11, 12, 13, 14, 3]
    tokens = ["[CLS]", "play", "##ing", "cat", "##s", "on", "[SEP]"]
    for seed in range(20):
        _, labels = mask_words(ids, tokens, random.Random(seed), rate=0.5, mask_id=4, vocab_size=40, special_ids={2, 3})
        chosen = {i for i, v in enumerate(labels) if v != -100}
        assert chosen and 0 not in chosen and 6 not in chosen
        assert (1 in chosen) == (2 in chosen) and (3 in chosen) == (4 in chosen)  # whole words only
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    assert np.allclose(box_iou(boxes)[0], [1.0, 81 / 100, 0.0])
    for seed in range(20):
        chosen = choose_regions(boxes, random.Random(seed), rate=0.3, iou_threshold=0.5)
        assert chosen.any() and chosen[0] == chosen[1]  # overlapping detections are masked together


def test_matching_negatives_are_never_sentences_of_the_image(tmp_path):
    """A mismatched pair's sentence is one its image is not paired with anywhere in the corpus: not the shared
    question text, not another image's identical caption (12 images, 6 captions: each caption on two images)."""
    write_corpus(tmp_path, num_images=12)
    examples = read_corpus(tmp_path / "pairs.json")
    own: dict[str, set[str]] = {}
    for e in examples:
        own.setdefault(e["img_id"], set()).add(e["sent"])
    features = RegionFeatures.build([tmp_path / "features.tsv"], tmp_path / "cache", progress_bar=False)
    tokenizer = StructVBertTokenizer.from_folder(tmp_path)
    regions = RegionCollator(features, max_objects=4, max_length=12, pad_to_batch=True, warn_on_cut=False)
    collate = PretrainCollator(tokenizer, regions, ["itm"], seed=0, mismatch_prob=0.5, image_sentences=own)
    sentence_of = {tuple(tokenizer(e["sent"])["input_ids"]): e["sent"] for e in examples}
    negatives = 0
    for seed in range(30):
        batch = random.Random(seed).sample(examples, 8)
        out = collate(batch)
        for example, ids, matched in zip(batch, out["input_ids"].tolist(), out["matched_labels"].tolist()):
            sent = sentence_of[tuple(i for i in ids if i != 0)]
            if matched:
                assert sent == example["sent"]
            else:
                negatives += 1
                assert sent not in own[example["img_id"]], (example, sent)
    assert 80 < negatives < 160  # about half of the 240 pairs, as mismatch_prob says
