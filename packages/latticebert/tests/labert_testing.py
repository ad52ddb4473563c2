"""Test helpers of alicemind-latticebert (imported by name: the file name is unique across the monorepo)."""

from __future__ import annotations

import random

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


FILLER = list("我们在工作很好天气东西南")
PLACES = ["北京", "上海"]
ORGS = ["人民大学"]


def ner_sentence(rng):
    words, tags = [], []
    for _ in range(rng.randint(2, 4)):
        for ch in rng.sample(FILLER, rng.randint(1, 2)):
            words.append(ch)
            tags.append("O")
        kind, name = ("LOC", rng.choice(PLACES)) if rng.random() < 0.6 else ("ORG", rng.choice(ORGS))
        for i, ch in enumerate(name):
            words.append(ch)
            tags.append(("B-" if i == 0 else "I-") + kind)
    return words, tags


def write_conll(path, sentences):
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(*s)) for s in sentences) + "\n", encoding="utf-8")


TOPICS = [["北京", "上海", "工作", "我们", "在"], ["研究生", "生命", "起源", "研究"], ["中国人民大学", "中国", "人民"],
          ["天气", "很好", "我们"]]  # fmt: skip


def write_corpus(path, docs=24, seed=0):
    rng = random.Random(seed)
    lines = []
    for d in range(docs):
        topic = TOPICS[d % len(TOPICS)]
        for k in range(6):
            # A document opens with 东 and closes with 西: an order cue that tells "next" from "swapped".
            line = "".join(rng.choice(topic) for _ in range(rng.randint(2, 4))) + " " + rng.choice(topic)
            lines.append(("东" if k == 0 else "") + line + ("西" if k == 5 else ""))
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
