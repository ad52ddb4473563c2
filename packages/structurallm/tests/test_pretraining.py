"""A short pre-training run where the MVLM and CPC losses both fall; the masking and the CPC areas."""

from __future__ import annotations

import json
import random

from structurallm_testing import synthetic_pages

from alicemind.structurallm import make_document
from alicemind.structurallm.encoder import DocumentEncoder
from alicemind.structurallm.pretraining import PretrainingDataConfig, cell_area, mask_window, run_pretraining


def test_cell_area_grid():
    assert cell_area((0, 0, 10, 10), 16) == 0
    assert cell_area((990, 0, 1000, 10), 16) == 3
    assert cell_area((0, 990, 10, 1000), 16) == 12
    assert cell_area((500, 500, 520, 520), 16) == 10  # centre 510 -> column 2, row 2
    assert cell_area((1000, 1000, 1000, 1000), 4) == 3


def test_masking_keeps_boxes_for_mvlm_and_hides_them_for_cpc(tokenizer):
    doc = make_document(["name", "of", "the", "total"] * 5, [[i * 40, 10, i * 40 + 30, 40] for i in range(20)],
                        cells=[i // 2 for i in range(20)])  # fmt: skip
    window = DocumentEncoder(tokenizer, max_length=64, stride=8).encode(doc)[0]
    data = PretrainingDataConfig(masked_lm_prob=0.3, cpc_prob=0.3)
    inst = mask_window(window, tokenizer, data, 16, random.Random(0))
    masked = [i for i, x in enumerate(inst["mlm_labels"]) if x != -100]
    asked = [i for i, x in enumerate(inst["cpc_labels"]) if x != -100]
    assert len(masked) == round(20 * 0.3) and masked[0] > 0
    assert all(inst["mlm_labels"][i] == window["input_ids"][i] for i in masked)
    assert len({window["cells"][i] for i in asked}) == 3  # 30 % of the 10 cells, every token of each
    for i in asked:
        assert inst["bbox"][i] == [0, 0, 0, 0] and inst["pos_bbox"][i] == 0
        assert inst["cpc_labels"][i] == cell_area(window["bbox"][i], 16)
    kept = [i for i in masked if i not in asked]
    assert all(inst["bbox"][i] == window["bbox"][i] for i in kept)  # MVLM keeps the 2-D position


def test_cell_ids_stay_inside_the_models_table(tokenizer):
    from alicemind.structurallm.pretraining import build_instances

    words = [w for i in range(40) for w in ("name", "of")]  # 40 cells, more than the test table's 20 ids
    doc = make_document(words, [[i * 10, 0, i * 10 + 5, 5] for i in range(80)], cells=[i // 2 for i in range(80)])
    data = PretrainingDataConfig(max_seq_length=64, stride=16)
    instances = build_instances([doc], tokenizer, data, 16, seed=0, max_pos_bbox=20)
    assert max(max(inst["pos_bbox"]) for inst in instances) == 20


def test_short_pretraining_run_lowers_both_losses(tokenizer, tmp_path):
    docs = tmp_path / "pages.jsonl"
    docs.write_text("".join(json.dumps(r) + "\n" for r in synthetic_pages(24)))
    tokenizer.save_pretrained(tmp_path / "tok")
    recipe = {
        "documents": str(docs), "tokenizer": str(tmp_path / "tok"), "scratch_config": "structurallm.test",
        "model_config": {"num_cpc_areas": 4}, "output_dir": str(tmp_path / "run"),
        "data": {"max_seq_length": 64, "stride": 16, "masked_lm_prob": 0.15, "cpc_prob": 0.5, "dupe_factor": 2},
        "training": {"max_steps": 150, "per_device_batch_size": 8, "lr": 2e-3, "warmup_ratio": 0.1,
                     "precision": "fp32", "seed": 3, "save_every": 0, "log_every": 100},
    }  # fmt: skip
    result = run_pretraining(recipe, progress_bar=False)
    assert result.num_instances == 48
    assert result.final["mlm_loss"] < 0.7 * result.initial["mlm_loss"]
    assert result.final["cpc_loss"] < 0.7 * result.initial["cpc_loss"]
    assert (result.model_dir / "model.safetensors").is_file() and (result.model_dir / "vocab.json").is_file()
