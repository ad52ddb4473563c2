"""Translation data in fairseq's ``translation_from_pretrained_veco`` layout, and decoding with core.generation.

Errata 1.1: ``fairseq-preprocess`` appends ``</s>`` and the task then appends the language tag, so
  source        = ``tok... </s> [src]``
  target/labels = ``tok... </s> [tgt]``
  decoder input = ``[tgt] tok... </s>`` (``LanguagePairDataset(eos=[tgt])`` moves the tag to the front)
and generation starts from ``[tgt]`` and stops at ``[tgt]`` (the tag is both decoder BOS and EOS).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alicemind.core.cli.compiling import inference_buckets
from alicemind.core.generation import GenerationConfig, generate
from alicemind.core.ops.compiling import bucket_length


def source_ids(tokens: Sequence[int], eos_id: int, src_tag_id: int) -> list[int]:
    """``tok... </s> [src]``."""
    return [*tokens, eos_id, src_tag_id]


def target_ids(tokens: Sequence[int], eos_id: int, tgt_tag_id: int) -> tuple[list[int], list[int]]:
    """(decoder input ``[tgt] tok... </s>``, labels ``tok... </s> [tgt]``)."""
    labels = [*tokens, eos_id, tgt_tag_id]
    return [tgt_tag_id, *labels[:-1]], labels


def encode_translation_pairs(
    tokenizer, pairs: Sequence[tuple[str, str]], src_lang: str, tgt_lang: str, *, max_length: int = 250
) -> list[dict]:
    """Features for :func:`translation_collator` from text pairs; pairs with a side over ``max_length`` pieces
    are dropped, as the prepare scripts' ``spm_encode --max-len 250`` filter does."""
    src_tag, tgt_tag = tokenizer.lang_id(src_lang), tokenizer.lang_id(tgt_lang)
    eos = tokenizer.eos_token_id
    srcs = tokenizer([s for s, _ in pairs], add_special_tokens=False)["input_ids"]
    tgts = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
    out = []
    for s, t in zip(srcs, tgts):
        if not s or not t or len(s) > max_length or len(t) > max_length:
            continue
        decoder_input, labels = target_ids(t, eos, tgt_tag)
        out.append({"input_ids": source_ids(s, eos, src_tag), "decoder_input_ids": decoder_input, "labels": labels})
    return out


def translation_collator(pad_token_id: int):
    """Right-pads ``input_ids`` / ``decoder_input_ids`` with pad and ``labels`` with -100."""
    from alicemind.core.data import DataCollatorWithPadding

    pad = DataCollatorWithPadding(pad_token_id)

    def collate(features: list[dict]) -> dict[str, torch.Tensor]:
        batch = pad(features)
        batch.pop("attention_mask", None)  # the model derives it from the pad id
        return batch

    return collate


def translate_ids(
    model, sources: Sequence[Sequence[int]], tgt_tag_id: int, *, config: GenerationConfig | None = None,
    batch_size: int = 64, **overrides,
) -> list[list[int]]:  # fmt: skip
    """Generate for source id lists (already ``... </s> [src]``); returns the generated ids up to and excluding
    the final ``</s> [tgt]`` (fairseq strips the EOS; ``--remove-bpe`` output has no ``</s>``)."""
    settings = {**model.generation_defaults(tgt_tag_id), **overrides}
    config = config or GenerationConfig.from_dict(settings)
    model.eval()
    device = next(model.parameters()).device
    pad, eos = model.config.pad_token_id, model.config.eos_token_id
    # Under --compile, source widths fall into a few buckets (one encoder graph each), the longest source the last.
    buckets = inference_buckets(max((len(s) for s in sources), default=1))
    outputs = []
    for start in range(0, len(sources), batch_size):
        rows = sources[start : start + batch_size]
        width = max(len(r) for r in rows)
        if buckets:
            width = bucket_length(width, buckets)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        result = generate(model, ids.to(device), ids.ne(pad).to(device), config)
        step = config.num_return_sequences
        for row in range(0, result.sequences.shape[0], step):
            seq = result.sequences[row, 1 : 1 + int(result.lengths[row])].tolist()
            while seq and seq[-1] in (tgt_tag_id, eos):
                seq.pop()
            outputs.append(seq)
    return outputs
