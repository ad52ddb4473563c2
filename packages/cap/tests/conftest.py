"""Tiny models shared by the CAP tests: a core-block classifier (hidden 32, 2 layers) and a tiny HF BERT."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from alicemind.core.config import ModelConfig
from alicemind.core.layers import BlockSpec, ClassificationHead, Pooler, TransformerStack
from alicemind.core.modeling import PreTrainedModel


@dataclasses.dataclass
class TinyConfig(ModelConfig):
    model_type = "tiny-cap"
    vocab_size: int = 40
    hidden_size: int = 32
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 64
    num_labels: int = 3
    dropout: float = 0.1


class TinyCoreClassifier(PreTrainedModel):
    """Embedding + core TransformerStack + Pooler + ClassificationHead (a StructBERT-shaped toy)."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        spec = BlockSpec(config.hidden_size, config.num_attention_heads, config.intermediate_size,
                         dropout=config.dropout, attention_dropout=config.dropout)  # fmt: skip
        self.encoder = TransformerStack(spec, config.num_hidden_layers)
        self.pooler = Pooler(config.hidden_size)
        self.classifier = ClassificationHead(config.hidden_size, config.num_labels, config.dropout)

    def forward(self, input_ids, attention_mask=None, labels=None):
        hidden = self.encoder(self.embed(input_ids), padding_mask=attention_mask).last_hidden_state
        logits = self.classifier(self.pooler(hidden))[0]
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def tiny_hf_bert(num_labels: int = 3, seed: int = 0):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, num_labels=num_labels,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(cfg)


def tiny_core(num_labels: int = 3, seed: int = 0, **changes) -> TinyCoreClassifier:
    torch.manual_seed(seed)
    return TinyCoreClassifier(TinyConfig(num_labels=num_labels, **changes))


def make_features(n: int = 24, seq: int = 7, vocab: int = 40, labels: int = 3, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(3, seq + 1, (1,), generator=gen))
        ids = torch.randint(1, vocab, (length,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": int(torch.randint(0, labels, (1,), generator=gen))})
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: one thread avoids OpenMP spinning on a busy 2-core runner (fused AdamW on 30
    small tensors measured 0.46 s per step with 2 threads under load, 2 ms with 1). Restored after each test, so
    other packages' tests in the same process keep their setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def collate():
    from alicemind.core.data import DataCollatorWithPadding

    return DataCollatorWithPadding(pad_token_id=0)


@pytest.fixture
def features():
    return make_features()


class Tiny:
    """The factories above, handed to tests as one fixture (test modules do not import conftest)."""

    core = staticmethod(tiny_core)
    hf_bert = staticmethod(tiny_hf_bert)
    features = staticmethod(make_features)
    core_cls = TinyCoreClassifier
    config_cls = TinyConfig


@pytest.fixture
def tiny() -> type[Tiny]:
    return Tiny
