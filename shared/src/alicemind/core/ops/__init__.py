"""Accelerated operations with portable fallbacks: precision choice, autocast, AdamW/LAMB, parameter groups, LR
schedules (the roles apex filled in the original code, now native PyTorch), and compiling for inference."""

from alicemind.core.ops.inference import InferenceModel, optimize_for_inference
from alicemind.core.ops.lamb import Lamb
from alicemind.core.ops.optim import build_optimizer, default_layer_id, param_groups
from alicemind.core.ops.precision import autocast, autocast_dtype, cpu_has_native_bf16, resolve_precision
from alicemind.core.ops.schedules import SCHEDULES, build_scheduler, resolve_warmup

__all__ = [
    "SCHEDULES",
    "InferenceModel",
    "Lamb",
    "autocast",
    "autocast_dtype",
    "build_optimizer",
    "build_scheduler",
    "cpu_has_native_bf16",
    "default_layer_id",
    "optimize_for_inference",
    "param_groups",
    "resolve_precision",
    "resolve_warmup",
]
