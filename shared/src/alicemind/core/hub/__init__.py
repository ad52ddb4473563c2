"""The checkpoint hub: a registry of released checkpoints, verified resumable downloads, a local cache and an
offline mode (``ALICEMIND_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""

from alicemind.core.hub.download import cache_dir, download_file, is_offline, sha256_file
from alicemind.core.hub.errors import ChecksumError, DownloadError, HubError, OfflineError, UnsafeArchiveError
from alicemind.core.hub.fetch import checkpoint_cache_path, extract_archive, fetch_checkpoint
from alicemind.core.hub.registry import (
    CheckpointEntry,
    get_checkpoint,
    list_checkpoints,
    register_checkpoint,
    unregister_checkpoint,
)

__all__ = [
    "CheckpointEntry",
    "ChecksumError",
    "DownloadError",
    "HubError",
    "OfflineError",
    "UnsafeArchiveError",
    "cache_dir",
    "checkpoint_cache_path",
    "download_file",
    "extract_archive",
    "fetch_checkpoint",
    "get_checkpoint",
    "is_offline",
    "list_checkpoints",
    "register_checkpoint",
    "sha256_file",
    "unregister_checkpoint",
]
