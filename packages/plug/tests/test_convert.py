"""The released 8-way Megatron shards: merge, re-split, streaming conversion, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from plug_testing import megatron_slice, released_state_dict, tiny_config, write_release, write_shard

from alicemind.core.checkpoint import CheckpointError, UnsafeCheckpointError
from alicemind.palm.convert import SOFA_DROPS, SOFA_RULES, map_keys
from alicemind.plug import (
    PlugConfig,
    PlugForConditionalGeneration,
    convert_megatron,
    merge_state_dicts,
    split_state_dict,
)
from alicemind.plug.convert import INDEX_NAME, _open_shards, find_shard_files


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    config = tiny_config()
    state = released_state_dict(config)
    return config, state, write_release(tmp_path_factory.mktemp("release"), config, state)


def test_eight_shards_merge_to_the_unsharded_originals(release):
    _, state, folder = release
    paths = find_shard_files(folder)
    assert [p.name for p in paths] == [f"mp_rank_{r:02d}_model_states.pt" for r in range(8)]
    shards = _open_shards(paths)
    qkv = "bert.encoder.layer.0.attention.self.query_key_value.weight"
    assert shards[0][qkv].shape == (12, 32)  # [q_0; k_0; v_0], 4 rows each
    merged = merge_state_dicts(shards)
    assert merged.keys() == state.keys()
    assert all(torch.equal(merged[k], state[k]) for k in state)


@pytest.mark.parametrize("degree", [2, 4])
def test_split_to_other_degrees_and_merge_back_exactly(release, degree):
    _, state, _ = release
    ranks = split_state_dict(state, degree)
    for rank, shard in enumerate(ranks):  # the split is Megatron's layout at that degree
        assert all(torch.equal(shard[k], megatron_slice(k, t, rank, degree)) for k, t in state.items())
    merged = merge_state_dicts(ranks)
    assert all(torch.equal(merged[k], state[k]) for k in state)
    again = merge_state_dicts(split_state_dict(merged, 8))
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_streaming_conversion_writes_sharded_safetensors_that_load(release, tmp_path):
    config, state, folder = release
    out = convert_megatron(folder, tmp_path / "out", max_shard_bytes=100_000)
    index = json.loads((out / INDEX_NAME).read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and all((out / f).is_file() for f in files)
    assert (out / "vocab.txt").read_text() == (folder / "vocab.txt").read_text()
    model = PlugForConditionalGeneration.from_pretrained(out).eval()
    assert model.source_format == "alicemind-sharded (megatron-mp8)"
    assert model.config.layer_norm_eps == 1e-5 and model.config.real_vocab_size == 120  # from sofa config.json
    # The same weights through palm's sofa mapping of the unsharded originals give the same outputs.
    ours, _ = map_keys(state, SOFA_RULES, SOFA_DROPS, source="test")
    ref = PlugForConditionalGeneration(PlugConfig.from_json_file(out / "config.json")).eval()
    ref.load_state_dict({k: v for k, v in ours.items() if not k.startswith("mlm_head.")})
    ids = torch.randint(104, 120, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(ids, labels=ids).logits, ref(ids, labels=ids).logits)
    mlm = PlugConfig.from_json_file(out / "config.json")
    assert mlm.num_hidden_layers == 2 and mlm.dec_hidden_layers == 2


_MEMORY_SCRIPT = """
import json, sys, torch
from alicemind.plug import convert_megatron, merge_state_dicts
from alicemind.plug.convert import _open_shards, find_shard_files
torch.set_num_threads(1)


def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024


def peak_rise(run):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current RSS
    start = rss("VmRSS")
    result = run()
    rise = rss("VmHWM") - start
    del result
    return rise


streaming = peak_rise(lambda: convert_megatron(sys.argv[1], sys.argv[2], max_shard_bytes=8 << 20))
whole = peak_rise(lambda: merge_state_dicts(_open_shards(find_shard_files(sys.argv[1]))))
print(json.dumps({"streaming": streaming, "whole": whole}))
"""


# glibc serves blocks above its mmap threshold with mmap and returns them on free; the threshold adapts upwards to
# 32 MB, so the tensors of a tiny model come from the heap, whose freed space stays in RSS. The 27B model's tensors
# (128-1024 MB) are all far above it: a fixed 64 KiB threshold gives the tiny model the allocation regime of the
# real one, which is what this test is about.
_LARGE_TENSOR_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def test_streaming_conversion_peak_memory_stays_near_one_shard(tmp_path):
    """Peak RSS rise converting a 95 MB model (12 MB per input shard) against a whole-model merge of the same files."""
    config = tiny_config(hidden_size=512, intermediate_size=2048, vocab_size=8192, real_vocab_size=8000)
    state = released_state_dict(config)
    model_bytes = sum(t.numel() * t.element_size() for t in state.values())
    folder = write_release(tmp_path, config, state)
    del state
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(folder), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", **_LARGE_TENSOR_MALLOC},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rise = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"peak RSS rise: streaming {rise['streaming'] / 1e6:.1f} MB, whole merge {rise['whole'] / 1e6:.1f} MB, "
          f"model {model_bytes / 1e6:.1f} MB")  # fmt: skip
    assert model_bytes > 90e6
    bound = 0.4 * model_bytes  # one input shard (1/8) + one tensor, with allocator and page-cache slack
    assert rise["whole"] > model_bytes  # the measurement sees a whole-model load...
    assert rise["streaming"] < bound  # ...and the converter stays far below it


def _assert_nothing_written(dst: Path) -> None:
    assert not dst.exists()
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}")]


def test_missing_shard_is_one_error_naming_the_file(release, tmp_path):
    config, state, _ = release
    folder = write_release(tmp_path, config, state)
    (folder / "28000" / "mp_rank_03_model_states.pt").unlink()
    with pytest.raises(CheckpointError, match="missing shard file.*mp_rank_03_model_states.pt"):
        convert_megatron(folder, tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_shards_of_another_degree_or_iteration_are_refused(release, tmp_path):
    config, state, _ = release
    folder = write_release(tmp_path, config, state)
    shards = folder / "28000"
    four_way = {k: megatron_slice(k, t, 1, 4) for k, t in state.items()}
    write_shard(shards, 1, 4, four_way)
    with pytest.raises(CheckpointError, match="mp_rank_01_model_states.pt says mp_world_size=4 but the folder holds 8"):
        convert_megatron(folder, tmp_path / "out")
    write_shard(shards, 1, 8, {k: megatron_slice(k, t, 1, 8) for k, t in state.items()}, iteration=27000)
    with pytest.raises(CheckpointError, match=r"mp_rank_01_model_states.pt is from \('global_steps', 27000\)"):
        convert_megatron(folder, tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_replicated_tensor_that_differs_fails_mid_write_and_leaves_nothing(release, tmp_path):
    config, state, _ = release
    folder = write_release(tmp_path, config, state)
    module = {k: megatron_slice(k, t, 3, 8) for k, t in state.items()}
    module["bert.encoder.layer.1.LayerNorm.weight"] = module["bert.encoder.layer.1.LayerNorm.weight"] + 1
    write_shard(folder / "28000", 3, 8, module)
    with pytest.raises(CheckpointError, match="mp_rank_03_model_states.pt: bert.encoder.layer.1.LayerNorm.weight is"):
        convert_megatron(folder, tmp_path / "out")  # found while writing: the staging folder is removed
    _assert_nothing_written(tmp_path / "out")


class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_hostile_pickle_in_a_shard_runs_nothing(release, tmp_path, monkeypatch):
    config, state, _ = release
    folder = write_release(tmp_path, config, state)
    path = folder / "28000" / "mp_rank_05_model_states.pt"
    torch.save({"module": {}, "optimizer": _Hostile(), "mp_world_size": 8}, path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match="mp_rank_05_model_states.pt"):
        convert_megatron(folder, tmp_path / "out")
    assert not (tmp_path / "PWNED").exists()
    _assert_nothing_written(tmp_path / "out")


def test_sofa_config_fields_and_the_27b_preset():
    big = PlugConfig.from_preset("plug.27b")
    assert (big.hidden_size, big.num_attention_heads, big.intermediate_size) == (8192, 128, 32768)
    assert (big.vocab_size, big.real_vocab_size, big.layer_norm_eps) == (21504, 21128, 1e-5)
    c = PlugConfig.from_sofa_dict({"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
                                   "layernorm_epsilon": 1e-5, "original_vocab_size": 100, "vocab_size": 128,
                                   "dec_hidden_layers": 1, "deepspeed": True})  # fmt: skip
    assert (c.layer_norm_eps, c.real_vocab_size, c.dec_hidden_layers) == (1e-5, 100, 1)
    with pytest.raises(ValueError, match="pre_ln=false"):
        PlugConfig.from_sofa_dict({"pre_ln": False})
