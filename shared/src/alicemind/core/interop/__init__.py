"""Interop with the tools users already run: Hugging Face ``transformers`` Auto classes and ONNX / ONNX Runtime.

Importing a family must stay cheap and must work without transformers (it is an optional extra), so a family
does not import transformers itself. It calls :func:`register_when_transformers_imported` with the name of its
small ``hf`` module: that module is imported (and registers the family's config and model classes with
``AutoConfig`` / ``AutoModel...``) right away when transformers is already imported, or else at the moment
transformers is first imported, or never when transformers is not installed.
"""

from alicemind.core.interop.hooks import register_when_transformers_imported, transformers_is_installed

__all__ = ["register_when_transformers_imported", "transformers_is_installed"]
