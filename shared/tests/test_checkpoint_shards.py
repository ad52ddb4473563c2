"""Megatron / DeepSpeed model-parallel shards (PLUG layout) merged back into one state dict."""

from __future__ import annotations

import argparse

import pytest
import torch

from alicemind.core.checkpoint import CheckpointError, load_deepspeed_mp_shards, merge_model_parallel_shards

H, F, V, P = 8, 16, 12, 2  # hidden, ffn, vocab, model-parallel ranks

# PLUG's tensor-parallel layout (reference/models-language.md, section 4.1).
PLUG_RULES = {
    r"word_embeddings\.weight$|decoder_weight$|cls\.predictions\.bias$": 0,
    r"query_key_value\.(weight|bias)$": (0, 3),
    r"cross_attention\.key_value\.(weight|bias)$": (0, 2),
    r"(intermediate\.dense|cross_attention\.query)\.(weight|bias)$": 0,
    r"(attention\.output\.dense|output\.dense|attention\.dense)\.weight$": 1,
    r".*": None,  # LayerNorms, biases of row-parallel layers, position embeddings
}


def full_model() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return {
        "bert.embeddings.word_embeddings.weight": r(V, H),
        "bert.embeddings.position_embeddings.weight": r(5, H),
        "bert.encoder.layer.0.attention.self.query_key_value.weight": r(3 * H, H),
        "bert.encoder.layer.0.attention.self.query_key_value.bias": r(3 * H),
        "bert.encoder.layer.0.attention.output.dense.weight": r(H, H),
        "bert.encoder.layer.0.attention.output.dense.bias": r(H),
        "bert.encoder.layer.0.intermediate.dense.weight": r(F, H),
        "bert.encoder.layer.0.intermediate.dense.bias": r(F),
        "bert.encoder.layer.0.output.dense.weight": r(H, F),
        "bert.encoder.layer.0.LayerNorm.weight": r(H),
        "decoder.decoder.layer.0.cross_attention.key_value.weight": r(2 * H, H),
        "decoder.decoder.layer.0.cross_attention.query.weight": r(H, H),
        "cls.predictions.decoder_weight": r(V, H),
        "cls.predictions.bias": r(V),
    }


def split_like_megatron(full: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The inverse of the merge, written independently: what each rank held."""
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(P)]
    for key, value in full.items():
        for rank in range(P):
            if "query_key_value" in key or "key_value" in key:
                parts = value.chunk(3 if "query_key_value" in key else 2, dim=0)  # [q; k; v] or [k; v]
                shards[rank][key] = torch.cat([p.chunk(P, dim=0)[rank] for p in parts], dim=0)
            elif any(s in key for s in ("word_embeddings", "decoder_weight", "predictions.bias", "intermediate",
                                        "cross_attention.query")):  # fmt: skip
                shards[rank][key] = value.chunk(P, dim=0)[rank].clone()
            elif key.endswith("dense.weight") and ("output" in key):
                shards[rank][key] = value.chunk(P, dim=1)[rank].clone()
            else:
                shards[rank][key] = value.clone()
    return shards


def test_merge_recovers_the_full_model():
    full = full_model()
    shards = split_like_megatron(full)
    assert shards[0]["bert.encoder.layer.0.attention.self.query_key_value.weight"].shape == (3 * H // P, H)
    merged = merge_model_parallel_shards(shards, PLUG_RULES)
    assert list(merged) == list(full)
    for key, value in full.items():
        assert torch.equal(merged[key], value), key


def test_deepspeed_files_round_trip(tmp_path):
    full = full_model()
    ckpt_dir = tmp_path / "28000"
    ckpt_dir.mkdir()
    for rank, shard in enumerate(split_like_megatron(full)):
        torch.save({"module": {k: v.half() for k, v in shard.items()}, "optimizer": None, "lr_scheduler": None,
                    "csr_tensor_module_names": set(), "skipped_steps": 0, "global_steps": 28000,
                    "dp_world_size": 1, "mp_world_size": P, "args": argparse.Namespace(fp16=True)},
                   ckpt_dir / f"mp_rank_{rank:02d}_model_states.pt")  # fmt: skip
    shards = load_deepspeed_mp_shards(ckpt_dir)
    assert len(shards) == P and shards[0]["cls.predictions.bias"].dtype == torch.float16
    merged = merge_model_parallel_shards(shards, PLUG_RULES)
    for key, value in full.items():
        assert torch.equal(merged[key], value.half()), key
    # An explicit, unordered list works too; a gap in the ranks does not.
    listed = load_deepspeed_mp_shards(sorted(ckpt_dir.iterdir(), reverse=True))
    assert torch.equal(listed[0]["cls.predictions.bias"], shards[0]["cls.predictions.bias"])
    with pytest.raises(CheckpointError, match=r"ranks are not 0..0: found \[1\]"):
        load_deepspeed_mp_shards([ckpt_dir / "mp_rank_01_model_states.pt"])


def test_world_size_mismatch_is_reported(tmp_path):
    torch.save({"module": {"w": torch.ones(1)}, "mp_world_size": 8}, tmp_path / "mp_rank_00_model_states.pt")
    with pytest.raises(CheckpointError, match="mp_world_size=8 but 1 shard files"):
        load_deepspeed_mp_shards(tmp_path)


def test_merge_errors_name_the_keys():
    shards = split_like_megatron(full_model())
    shards[1]["bert.encoder.layer.0.LayerNorm.weight"] += 1
    with pytest.raises(
        CheckpointError, match=r"'bert.encoder.layer.0.LayerNorm.weight' is marked replicated but rank 1"
    ):
        merge_model_parallel_shards(shards, PLUG_RULES)
    with pytest.raises(CheckpointError, match=r"4 key\(s\) match no split rule: .*query_key_value.bias"):
        merge_model_parallel_shards(shards, {r"weight$": 0})
    del shards[1]["cls.predictions.bias"]
    with pytest.raises(CheckpointError, match=r"shard 1 has different keys .*missing cls.predictions.bias"):
        merge_model_parallel_shards(shards, PLUG_RULES)
