"""SDCUP (Hui et al.): a table-aware UER-BERT encoder, SQLova-style NL2SQL executed on SQLite, and
schema-dependency pre-training under a schema-aware curriculum."""

from alicemind.core.interop import register_family as _register_family
from alicemind.sdcup.config import DEPENDENCY_LABELS, SdcupConfig
from alicemind.sdcup.interop import SPEC as _SPEC
from alicemind.sdcup.model import SdcupEncoder, SdcupForPreTraining, UerLayerNorm
from alicemind.sdcup.nl2sql import SdcupForNL2SQL
from alicemind.sdcup.sql import SqlQuery, TableDatabase
from alicemind.sdcup.table import Table, TableError, TableQuestion, TableTooLongError
from alicemind.sdcup.version import __version__

_register_family(_SPEC)  # transformers' Auto classes (once transformers is imported) and `alicemind export`

__all__ = [
    "DEPENDENCY_LABELS",
    "SdcupConfig",
    "SdcupEncoder",
    "SdcupForNL2SQL",
    "SdcupForPreTraining",
    "SdcupTokenizer",
    "SqlQuery",
    "Table",
    "TableDatabase",
    "TableError",
    "TableQuestion",
    "TableTooLongError",
    "UerLayerNorm",
    "__version__",
]


def __getattr__(name: str):
    # The tokenizer pulls in the tokenizers library; import it on first use only.
    if name == "SdcupTokenizer":
        from alicemind.sdcup.tokenization import SdcupTokenizer

        return SdcupTokenizer
    raise AttributeError(f"module 'alicemind.sdcup' has no attribute {name!r}")
