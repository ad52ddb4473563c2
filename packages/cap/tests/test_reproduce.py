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
