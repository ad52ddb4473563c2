"""A tiny SentencePiece model trained in the test over many languages' scripts.

XLM-R's (and VECO's) ``sentencepiece.bpe.model`` is, despite its name, a unigram model, and transformers' fast
converter reads it as one; so is this.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import sentencepiece as spm

SCRIPTS = {
    "en": "the quick brown fox jumps over lazy dogs and cats",
    "de": "über straße größe schön müde fährt",
    "ru": "быстрая коричневая лиса прыгает через собаку",
    "el": "η γρήγορη καφέ αλεπού πηδά πάνω",
    "ar": "الثعلب البني السريع يقفز فوق الكلب",
    "hi": "तेज़ भूरी लोमड़ी आलसी कुत्ते पर कूदती है",
    "zh": "敏捷的棕色狐狸跳过了懒狗",
    "ja": "素早い茶色の狐がのろまな犬を飛び越える",
    "ko": "빠른 갈색 여우가 게으른 개를 뛰어넘는다",
    "th": "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้าม",
    "he": "השועל החום המהיר קופץ מעל הכלב",
}


def corpus(seed: int = 0, n: int = 400) -> list[str]:
    rng = random.Random(seed)
    words = {lang: text.split() if " " in text else list(text) for lang, text in SCRIPTS.items()}
    lines = []
    for _ in range(n):
        lang = rng.choice(sorted(words))
        sep = "" if lang in ("zh", "ja", "th") else " "
        lines.append(sep.join(rng.choice(words[lang]) for _ in range(rng.randint(3, 9))) + rng.choice(".!?,"))
    return lines


def train_spm(directory: Path, vocab_size: int = 300, extra: list[str] | tuple[str, ...] = ()) -> Path:
    """Train on :func:`corpus` plus ``extra`` lines (words a test needs as whole pieces)."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus() + list(extra)), model_writer=buffer, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sentencepiece.bpe.model"
    path.write_bytes(buffer.getvalue())
    return path
