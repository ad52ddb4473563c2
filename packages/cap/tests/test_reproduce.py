"""The mini-reproduction's arms: equal schedule and sparsity, only CAP-m adds KD and the contrastive modules."""

from __future__ import annotations

from alicemind.cap.reproduce import MiniConfig, arm_config, format_mini


def test_arms_differ_only_in_objective_and_criterion():
    cfg = MiniConfig()
    arms = {m: arm_config(m, 0.8, cfg) for m in ("magnitude", "movement", "cap-m")}
    for arm in arms.values():
        assert (arm.final_sparsity, arm.warmup_steps, arm.mask_lr) == (0.8, cfg.warmup_steps, cfg.mask_lr)
    assert (
        arms["magnitude"].extra == {"pruning_method": "magnitude"}
        and arms["movement"].extra["pruning_method"] == "topk"
    )
    for base in ("magnitude", "movement"):
        b = arms[base]
        assert not (b.use_prc or b.use_snc or b.use_fic or b.use_distill) and b.ce_weight == 1.0
    cap = arms["cap-m"]
    assert cap.use_prc and cap.use_snc and cap.use_fic and cap.use_distill and cap.ce_weight == 0.1


def test_table_reports_mean_spread_and_paired_difference():
    results = {
        "config": {"model_dir": "/x/model", "warmup_steps": 6, "epochs": 6, "batch_size": 16, "lr": 2e-4,
                   "mask_lr": 1e-2, "teacher_epochs": 4, "seeds": [1, 2], "sparsities": [0.5]},
        "labels": ["a", "b"], "n_train": 4, "n_eval": 4, "teacher": [0.9, 0.7], "seconds": 60,
        "environment": "env", "load_average": [1, 1], "complete": False,
        "accuracy": {"magnitude": {"0.5": [0.5, 0.7]}, "cap-m": {"0.5": [0.6, 0.9]}},
    }  # fmt: skip
    text = format_mini(results)
    assert "| 50% | 60.0 ± 14.1 (50.0, 70.0) | 75.0 ± 21.2 (60.0, 90.0) |" in text
    assert "CAP-m - magnitude: +15.0 points (paired, s.e. 5.0)" in text and "Incomplete run" in text


def test_table_of_a_cut_run_marks_missing_cells():
    results = {
        "config": {"model_dir": "/x/model", "warmup_steps": 6, "epochs": 6, "batch_size": 16, "lr": 2e-4,
                   "mask_lr": 1e-2, "teacher_epochs": 4, "seeds": [1], "sparsities": [0.5, 0.9]},
        "labels": ["a"], "n_train": 4, "n_eval": 4, "teacher": [0.9], "seconds": 6, "environment": "env",
        "load_average": [1, 1], "complete": False,
        "accuracy": {"magnitude": {"0.5": [0.5], "0.9": []}, "cap-m": {"0.5": [], "0.9": []}},
    }  # fmt: skip
    text = format_mini(results)
    assert "| 50% | 50.0 ± 0.0 (50.0) | - |" in text and "| 90% | - | - |" in text


def _run_folder(tmp_path, task, method, rows, key):
    import json

    folder = tmp_path / f"{task}-{method}"
    folder.mkdir()
    (folder / "cap_results.json").write_text(json.dumps({"task": task, "method": method, key: rows}))
    return folder


def test_paper_table_puts_ours_beside_every_readable_paper_number(tmp_path):
    from alicemind.cap.reproduce import MOVEMENT_BASELINES, PAPER, paper_table

    qqp = _run_folder(tmp_path, "QQP", "cap-m", {"sparsity": 0.9, "accuracy": 0.905, "f1": 0.8716}, "result")
    sst = _run_folder(tmp_path, "sst-2", "cap-f", [{"sparsity": 0.5, "accuracy": 0.91}], "steps")
    text = paper_table([qqp, sst])
    assert "| qqp | cap-m | 90% | accuracy 91.6, f1 87.7 | accuracy 90.5, f1 87.2 |" in text
    assert "| qqp | cap-soft | 90% | accuracy 90.7, f1 87.4 | not run |" in text
    assert "| mnli | CAP (abstract) | 97% | 96.3% of dense BERT kept |" in text
    assert "| sst-2 | cap-f | 50% | accuracy 91.0 |" in text
    assert "| qqp (acc/F1) | 91.4/88.4 | 3% | 72.4/57.8 | 87.0/81.9 | 86.1/81.5 | 89.1/85.5 |" in text
    alone = paper_table()
    assert alone.count("not run") == len(PAPER) and "Our runs" not in alone
    assert sum(len(v[1]) for v in MOVEMENT_BASELINES.values()) == 6 == alone.count("| 10% |") + alone.count("| 3% |")


def test_cap_f_arm_is_the_structured_glue_objective_and_its_weight_share(tiny):
    from alicemind.cap.reproduce import structured_weight_sparsity

    cfg = MiniConfig()
    arm = arm_config("cap-f", 0.5, cfg)
    assert arm.method == "cap-f" and arm.retrain_epochs == cfg.structured_retrain_epochs
    assert (arm.tau, arm.w_unsup, arm.w_sup, arm.kd_temperature) == (0.1, 0.3, 3.0, 1.0)
    assert {0.5, 0.8, 0.9} <= {round(s, 4) for s in arm.sparsities} and "cap-f" in cfg.methods
    # tiny BERT: Q, K, V, O = 4 * 32 * 32 weights, FFN in + out = 2 * 32 * 64: half the heads, a quarter of neurons
    assert structured_weight_sparsity(tiny.hf_bert(), 0.5, 0.25) == (4096 * 0.5 + 4096 * 0.25) / 8192


def test_unstructured_arms_take_the_mini_configs_warmups():
    cfg = MiniConfig(initial_warmup=3.0, final_warmup=1.5)
    for method in ("magnitude", "movement", "cap-m"):
        arm = arm_config(method, 0.5, cfg)
        assert (arm.initial_warmup, arm.final_warmup) == (3.0, 1.5)


def test_mini_schedule_stays_dense_for_half_the_run_before_pruning():
    # With 8 dense steps the scores were chosen while the fresh head was still random and movement / CAP-m ended
    # at chance (cap_mini_dense8.md); the mini budget keeps 48 of its 96 steps dense.
    from alicemind.cap.movement import cubic_threshold

    cfg = MiniConfig()
    total = cfg.epochs * (6 * cfg.train_per_class // cfg.batch_size)
    arm = arm_config("movement", 0.8, cfg)
    kw = dict(initial=1.0, final=0.2, warmup_steps=arm.warmup_steps, total_steps=total,
              initial_warmup=arm.initial_warmup, final_warmup=arm.final_warmup)  # fmt: skip
    assert total == 96
    assert cubic_threshold(48, **kw) == 1.0 and cubic_threshold(49, **kw) < 1.0
    assert cubic_threshold(79, **kw) > 0.2 and cubic_threshold(80, **kw) == 0.2
