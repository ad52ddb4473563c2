"""Test helpers of alicemind-latticebert (imported by name: the file name is unique across the monorepo)."""

from __future__ import annotations

from alicemind.latticebert import LatticeBertConfig

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("研究生命起源天气很好我们在北京上海工作模型中国人民大学东西南")
PIECES = ["be", "##rt", "a", "##b"]
LEXICON = ["研究", "研究生", "生命", "起源", "模型", "北京", "上海", "工作", "中国", "人民", "大学", "中国人民大学"]


def write_vocab(folder) -> list[str]:
    tokens = SPECIALS + CHARS + PIECES
    (folder / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return tokens


def write_lexicon(folder) -> None:
    (folder / "lexicon.txt").write_text("".join(f"{w}\n" for w in LEXICON), encoding="utf-8")


def tiny_config(vocab_size: int, **overrides) -> LatticeBertConfig:
    return LatticeBertConfig.from_preset("latticebert.test", vocab_size=vocab_size, **overrides)
