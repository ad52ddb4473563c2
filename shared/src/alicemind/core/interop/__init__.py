"""Interop with the tools users already run: Hugging Face ``transformers`` Auto classes and ONNX / ONNX Runtime.

A family calls :func:`register_family` with its :class:`FamilySpec` (data: config class, model class per task)
at import. Importing a family must stay cheap and work without transformers (an optional extra), so the spec is
registered with transformers' Auto classes right away only when transformers is already imported; otherwise at
the moment transformers is first imported (an import hook), or never when it is not installed.
"""

from __future__ import annotations

from alicemind.core.interop.hooks import call_when_transformers_imported, transformers_is_installed
from alicemind.core.interop.spec import (
    TASK_NAMES,
    FamilySpec,
    NoHeadError,
    UnknownModelTypeError,
    registered_specs,
    spec_for_folder,
)

__all__ = [
    "TASK_NAMES",
    "FamilySpec",
    "NoHeadError",
    "UnknownModelTypeError",
    "call_when_transformers_imported",
    "register_family",
    "registered_specs",
    "spec_for_folder",
    "transformers_is_installed",
]


def register_family(spec: FamilySpec) -> None:
    """Make a family's folders known to the exporter now and to transformers' Auto classes (lazily)."""
    from alicemind.core.interop.spec import add_spec

    add_spec(spec)
    if not spec.peer:
        call_when_transformers_imported(lambda: _register_with_transformers(spec))
    if "question-answering" in spec.models:
        # Peer families (StructBERT as BERT) register nothing with transformers, but their QA folders need our
        # pipeline: transformers 5 has none under "question-answering".
        call_when_transformers_imported(_register_pipelines)


def _register_pipelines() -> None:
    from alicemind.core.interop.pipelines import register_pipelines

    register_pipelines()


def _register_with_transformers(spec: FamilySpec) -> None:
    from alicemind.core.interop.hf import register_with_transformers

    register_with_transformers(spec)
