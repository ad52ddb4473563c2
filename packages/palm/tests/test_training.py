"""Training end to end through core's Trainer: the joint pre-training objective lowers both of its losses, and a
tiny fine-tune learns to reverse random sequences (which needs the source: nothing else predicts them)."""

from __future__ import annotations

import random
from contextlib import contextmanager

import pytest
import torch
from torch.utils.data import DataLoader

from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.training import Trainer, TrainingConfig
from alicemind.palm.data import seq2seq_collator
from alicemind.palm.model import PalmForConditionalGeneration
from alicemind.palm.pretraining import PalmForPreTraining, PretrainingCollator, PretrainingDataConfig, build_instances

PAD, BOS, EOS, MASK, V = 0, 1, 2, 3, 24


@contextmanager
def one_thread():
    # Tiny matmuls run fastest single-threaded, and it keeps timing stable on a busy 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(model, loader, steps: int, lr: float) -> list[dict]:
    config = TrainingConfig(max_steps=steps, lr=lr, warmup_steps=20, per_device_batch_size=loader.batch_size,
                            progress_bar=False, log_every=10, device="cpu", precision="fp32", resume=None)  # fmt: skip
    trainer = Trainer(model, config, loader)
    with one_thread():
        state = trainer.train()
    return [r for r in state.log_history if "loss" in r]


def test_pretraining_lowers_mlm_and_decoder_loss(make_config, arch):
    rng = random.Random(0)
    # Documents follow t[i+1] = t[i] + stride (mod 20): masked tokens and continuations are predictable.
    docs = []
    for _ in range(300):
        start, stride = rng.randrange(20), rng.randrange(1, 3)
        docs.append([4 + (start + stride * i) % 20 for i in range(rng.randint(20, 40))])
    data = PretrainingDataConfig(max_source_length=18, max_target_length=8, mlm_probability=0.2)
    instances = build_instances(docs, data, bos_token_id=BOS, eos_token_id=EOS, rng=rng)
    assert all(len(x["source_ids"]) <= 18 and 3 <= len(x["target_ids"]) <= 8 for x in instances)
    collate = PretrainingCollator(pad_token_id=PAD, mask_token_id=MASK, vocab_size=V, special_ids=[BOS, EOS, MASK],
                                  mlm_probability=data.mlm_probability, generator=torch.Generator().manual_seed(0))  # fmt: skip
    # presumm-en-pgen trains the decoder loss through the copy mechanism (pointer-generator).
    config = make_config(arch, vocab_size=V, hidden_size=48, num_attention_heads=4, intermediate_size=96,
                         pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, initializer_range=0.02)  # fmt: skip
    torch.manual_seed(0)
    model = PalmForPreTraining(config)
    loader = DataLoader(instances, batch_size=32, shuffle=True, collate_fn=collate)
    history = _train(model, loader, steps=200, lr=3e-3)
    first, last = history[0], history[-1]
    # Both start near ln(24) = 3.18 (uniform); the MLM part learns slower (only 20% of tokens carry a label), and
    # in 200 steps the English architecture (post-LN RoBERTa encoder) gets less far than sofa's pre-LN one.
    mlm_ratio, lm_ratio = (0.8, 0.3) if arch == "sofa-zh" else (0.9, 0.45)
    assert first["mlm_loss"] > 3.0 and first["lm_loss"] > 3.0
    assert last["mlm_loss"] < mlm_ratio * first["mlm_loss"], (first, last)
    assert last["lm_loss"] < lm_ratio * first["lm_loss"], (first, last)


def test_collator_masks_only_real_non_special_tokens():
    collate = PretrainingCollator(pad_token_id=PAD, mask_token_id=MASK, vocab_size=V, special_ids=[BOS, EOS],
                                  mlm_probability=0.5, generator=torch.Generator().manual_seed(1))  # fmt: skip
    batch = collate([{"source_ids": [BOS, 5, 6, 7, EOS], "target_ids": [BOS, 8, 9, EOS]},
                     {"source_ids": [BOS, 10, EOS], "target_ids": [BOS, 11, EOS]}])  # fmt: skip
    labels = batch["mlm_labels"]
    chosen = labels != -100
    assert chosen[1].sum() == 1 and chosen[:, 0].sum() == 0 and not chosen[1, 2:].any()  # never BOS/EOS/pad
    assert torch.equal(batch["decoder_input_ids"][0], torch.tensor([BOS, 8, 9]))
    assert torch.equal(batch["labels"][1], torch.tensor([11, EOS, -100]))


def _reverse_examples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = [rng.randrange(4, V) for _ in range(rng.randint(3, 8))]
        target = [BOS, *reversed(s), EOS]
        out.append({"input_ids": [BOS, *s, EOS], "decoder_input_ids": target[:-1], "labels": target[1:]})
    return out


@pytest.mark.parametrize(("arch", "steps"), [("sofa-zh", 250), ("presumm-en-pgen", 200)])
def test_finetune_reverses_sequences(make_config, arch, steps):
    sizes = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128)
    if arch != "sofa-zh":
        sizes.update(dec_hidden_size=64, dec_num_attention_heads=4, dec_intermediate_size=128, dec_dropout=0.0)
    config = make_config(arch, vocab_size=V, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02, **sizes)  # fmt: skip
    torch.manual_seed(0)
    model = PalmForConditionalGeneration(config)
    loader = DataLoader(_reverse_examples(4000, 0), batch_size=64, shuffle=True, collate_fn=seq2seq_collator(PAD))
    _train(model, loader, steps=steps, lr=3e-3)

    test = _reverse_examples(200, 1)
    batch = seq2seq_collator(PAD)([{"input_ids": x["input_ids"]} for x in test])
    with one_thread():
        out = generate(model.eval(), batch["input_ids"], batch["attention_mask"],
                       GenerationConfig(**model.generation_defaults(), max_new_tokens=12))  # fmt: skip
    hits = 0
    for row, example in enumerate(test):
        expected = [*example["labels"]]  # reversed source then EOS
        generated = out.sequences[row, 1 : 1 + out.lengths[row]].tolist()
        hits += generated == expected
    assert hits / len(test) >= 0.95
