"""Tokenizers: WordPiece and byte-level BPE over the Rust `tokenizers` library, SentencePiece with the fairseq id
layout, and the Chinese helpers (character splitting, jieba words, whole-word groups, lexicon matching)."""

from alicemind.core.tokenization.backend import Tokenizer
from alicemind.core.tokenization.base import BaseTokenizer
from alicemind.core.tokenization.bpe import ByteLevelBPETokenizer
from alicemind.core.tokenization.chinese import (
    JiebaSegmenter,
    is_cjk_char,
    split_chinese_chars,
    whole_word_groups,
)
from alicemind.core.tokenization.encoding import BatchEncoding
from alicemind.core.tokenization.lexicon import LexiconMatcher
from alicemind.core.tokenization.spm import SentencePieceTokenizer
from alicemind.core.tokenization.wordpiece import WordPieceTokenizer, read_vocab_txt

__all__ = [
    "BaseTokenizer",
    "BatchEncoding",
    "ByteLevelBPETokenizer",
    "JiebaSegmenter",
    "LexiconMatcher",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordPieceTokenizer",
    "is_cjk_char",
    "read_vocab_txt",
    "split_chinese_chars",
    "whole_word_groups",
]
