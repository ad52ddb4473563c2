"""PLUG's tokenizer (BERT Chinese WordPiece, as PALM's) and the original's text post-processing quirks."""

from __future__ import annotations

import re

from alicemind.palm.tokenization import PalmChineseTokenizer

# PLUG/generate_plug.py line 202: applied to the prompt before tokenising.
_PROMPT_REPLACEMENTS = (("‘", "'"), ("“", '"'), ("——", "--"))


class PlugTokenizer(PalmChineseTokenizer):
    """PALM's Chinese WordPiece tokenizer ([CLS]=101 is the decoder start, [SEP]=102 the end, pad 0)."""


def original_prompt(text: str) -> str:
    """The prompt rewriting of ``generate_plug.py`` (curly quotes to ASCII, em dash pair to ``--``)."""
    for old, new in _PROMPT_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def original_detokenize(tokens: list[str], unk_token: str = "[UNK]") -> str:
    """The original's output rendering: runs of [UNK] collapse to one, which prints as ``“``; ``##`` is stripped
    and tokens are joined without spaces (``generate_plug.py`` lines 261-283)."""
    out: list[str] = []
    for token in tokens:
        if token == unk_token and out and out[-1] == unk_token:
            continue
        out.append(token)
    text = "".join("“" if t == unk_token else re.sub(r"^##", "", t) for t in out)
    return text
