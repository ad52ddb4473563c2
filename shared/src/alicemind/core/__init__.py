"""alicemind-core: the layers, tokenizers, checkpoint readers, hub, generation and training shared by every family."""

from alicemind.core.version import __version__

__all__ = ["__version__"]
