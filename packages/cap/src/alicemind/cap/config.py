"""CapConfig: every knob of CAP-f / CAP-m / CAP-soft, with the original scripts' values as named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

METHODS = ("cap-f", "cap-m", "cap-soft")
#: The structured loop's cumulative sparsities (run_glue.sh / run_squad.sh: prune_percent 10,20,...,90).
ORIGINAL_SPARSITY_SEQUENCE = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def check_sparsity(value: float, name: str = "sparsity") -> float:
    """``value`` as a float in [0, 1); anything else is a one-line ValueError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (the fraction removed; 1 would remove everything), got {value!r}")
    return number


@dataclass
class CapConfig:
    """The CAP objective and pruning settings (techniques.md §3; defaults = the GLUE structured script).

    The loss is ``ce_weight * CE + kd_weight * T^2 * KL(teacher || student) + sum over the enabled banks of the
    contrastive term`` (``w_unsup`` unsupervised + ``w_sup`` supervised, temperature ``tau``), plus for CAP-soft
    the L1 term of the sigmoid scores.
    """

    method: str = "cap-f"
    use_prc: bool = True  # contrast with the pre-trained model (bank filled at the first pruning step / epoch 0)
    use_snc: bool = True  # contrast with snapshots (intermediate pruned models)
    use_fic: bool = True  # contrast with the fine-tuned teacher
    use_distill: bool = True  # logit distillation from the teacher
    tau: float = 0.1
    extra_examples: int = 4096
    w_unsup: float = 0.3
    w_sup: float = 3.0
    supervised: bool = True  # False for QA (no labels to contrast)
    ce_weight: float = 0.1
    kd_weight: float = 0.9
    kd_temperature: float = 1.0  # structured scripts; the unstructured default is 2.0
    # structured (CAP-f)
    sparsities: tuple[float, ...] = ORIGINAL_SPARSITY_SEQUENCE
    retrain_epochs: int = 2
    normalize_by_layer: bool = True
    at_least_heads_per_layer: int = 1
    importance_subset: float = 1.0
    # unstructured (CAP-m / CAP-soft)
    final_sparsity: float = 0.9  # CAP-m top-K: fraction removed at the end (1 - final threshold)
    initial_sparsity: float = 0.0
    scope: str = "local"  # top-K per matrix (the scripts) or "global"
    soft_initial_threshold: float = 0.0
    soft_final_threshold: float = 0.1
    final_lambda: float = 0.0
    warmup_steps: int = 0
    initial_warmup: float = 2.0
    final_warmup: float = 3.0
    mask_lr: float = 1e-2
    mask_init: float = 0.0
    # banks
    max_snapshots: int = 9
    bank_dtype: str = "float16"
    bank_eval_mode: bool = True  # the original encodes in whatever mode the model is in (dropout noise): False
    memmap_threshold_bytes: int = 1 << 30
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.method = self.method.lower()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        self.sparsities = tuple(check_sparsity(s, "sparsities entry") for s in self.sparsities)
        if list(self.sparsities) != sorted(self.sparsities):
            raise ValueError(f"sparsities must be cumulative (increasing), got {list(self.sparsities)}")
        self.final_sparsity = check_sparsity(self.final_sparsity, "final_sparsity")
        self.initial_sparsity = check_sparsity(self.initial_sparsity, "initial_sparsity")
        if self.scope not in ("local", "global"):
            raise ValueError(f"scope must be 'local' (per matrix) or 'global', got {self.scope!r}")
        if self.tau <= 0 or self.kd_temperature <= 0:
            raise ValueError("tau and kd_temperature must be > 0")
        if self.extra_examples < 0 or self.max_snapshots < 0:
            raise ValueError("extra_examples and max_snapshots must be >= 0")
        if self.bank_dtype not in ("float16", "float32", "bfloat16"):
            raise ValueError(f"bank_dtype must be float16, bfloat16 or float32, got {self.bank_dtype!r}")

    @property
    def uses_contrast(self) -> bool:
        return self.use_prc or self.use_snc or self.use_fic

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CapConfig:
        """Build from a mapping; an unknown key is a one-line error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CAP setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(data)
        if "sparsities" in values:
            values["sparsities"] = tuple(values["sparsities"])
        return cls(**values)
