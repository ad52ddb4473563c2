"""core.cli.compiling (the --compile switch every verb shares) and the collator's opt-in shape buckets."""

from __future__ import annotations

import argparse

import pytest
import torch

from alicemind.core.cli import CliError
from alicemind.core.cli.compiling import (
    add_compile_arguments,
    compile_scope,
    compiling,
    inference_buckets,
    maybe_optimize,
)
from alicemind.core.data.collator import DataCollatorWithPadding
from alicemind.core.ops import InferenceModel
from alicemind.core.ops.compiling import DEFAULT_BUCKETS


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_compile_arguments(parser)
    return parser.parse_args(list(argv))


class _TinyTagger(torch.nn.Module):
    """Embedding + one attention layer with a key padding mask: outputs at real positions ignore padding."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(30, 16)
        self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.out = torch.nn.Linear(16, 3)

    def forward(self, input_ids, attention_mask):
        h = self.embed(input_ids)
        h, _ = self.attn(h, h, h, key_padding_mask=attention_mask == 0, need_weights=False)
        return self.out(h)


def test_maybe_optimize_follows_the_flag_and_the_verb_scope(monkeypatch):
    monkeypatch.delenv("ALICEMIND_COMPILE_BACKEND", raising=False)
    model = _TinyTagger()
    assert maybe_optimize(model, _parse()) is model
    assert maybe_optimize(model) is model and not compiling() and inference_buckets() is None
    fast = maybe_optimize(model, _parse("--compile", "--compile-backend", "eager"))
    assert isinstance(fast, InferenceModel) and maybe_optimize(fast, _parse("--compile")) is fast
    seen = {}

    @compile_scope
    def verb(args):
        seen["model"] = maybe_optimize(model)
        seen["buckets"] = inference_buckets(max_length=100)
        return 0

    assert verb(_parse("--compile", "--compile-backend", "aot_eager")) == 0
    assert isinstance(seen["model"], InferenceModel) and seen["buckets"] == (16, 32, 64, 100)
    assert inference_buckets(40, _parse("--compile")) == (16, 32, 40) and inference_buckets(40, _parse()) is None
    assert not compiling()  # the scope ends with the verb
    assert verb(_parse()) == 0 and seen["model"] is model and seen["buckets"] is None


def test_backend_from_environment_and_a_bad_name_is_one_line(monkeypatch):
    monkeypatch.setenv("ALICEMIND_COMPILE_BACKEND", "eager")
    assert isinstance(maybe_optimize(_TinyTagger(), _parse("--compile")), InferenceModel)
    monkeypatch.setenv("ALICEMIND_COMPILE_BACKEND", "inductr")
    with pytest.raises(CliError, match="ALICEMIND_COMPILE_BACKEND='inductr' is not a compile backend"):
        maybe_optimize(_TinyTagger(), _parse("--compile"))


def _features(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(1, 30, (n,), generator=g).tolist(), "labels": [1] * n} for n in lengths]


def test_bucketed_widths_fall_into_the_buckets():
    collate = DataCollatorWithPadding(0, bucket_lengths=DEFAULT_BUCKETS)
    widths = {collate(_features([n, max(n // 2, 1)]))["input_ids"].shape[1] for n in range(1, 300, 7)}
    assert widths == {16, 32, 64, 128, 256, 512}
    assert collate(_features([600]))["input_ids"].shape[1] == 1024  # beyond the last: its multiples
    batch = collate(_features([5, 3]))
    assert batch["attention_mask"].sum(1).tolist() == [5, 3] and (batch["labels"][:, 5:] == -100).all()
    both = DataCollatorWithPadding(0, bucket_lengths=(10, 20), pad_to_multiple_of=8)
    assert both(_features([11]))["input_ids"].shape[1] == 24
    with pytest.raises(ValueError, match="increasing positive lengths"):
        DataCollatorWithPadding(0, bucket_lengths=(32, 16))


def test_bucketed_batches_give_the_unbucketed_outputs_at_real_positions():
    torch.manual_seed(0)
    model = _TinyTagger().eval()
    plain, bucketed = DataCollatorWithPadding(0), DataCollatorWithPadding(0, bucket_lengths=(8, 16, 32))
    for seed, lengths in enumerate([[3, 7], [9, 2, 12], [17, 5]]):
        features = _features(lengths, seed)
        a, b = plain(features), bucketed(features)
        assert b["input_ids"].shape[1] in (8, 16, 32) and b["input_ids"].shape[1] >= a["input_ids"].shape[1]
        with torch.no_grad():
            out_a = model(a["input_ids"], a["attention_mask"])
            out_b = model(b["input_ids"], b["attention_mask"])
        for row, n in enumerate(lengths):
            torch.testing.assert_close(out_b[row, :n], out_a[row, :n], atol=1e-5, rtol=1e-5)


def test_a_ragged_stream_compiles_one_graph_per_bucket():
    from alicemind.core.ops.compiling import trace_calls

    torch.manual_seed(0)
    model = _TinyTagger().eval()
    bucketed = DataCollatorWithPadding(0, bucket_lengths=(8, 16, 32))
    lengths = [[3, 5], [7, 2], [9, 4], [12, 16], [6, 1], [20, 3], [31, 8], [15, 10]]  # 8 batches of 8 distinct widths
    graphs = {}
    for name, collate in (("bucketed", bucketed), ("plain", DataCollatorWithPadding(0))):
        batches = [collate(_features(n, i)) for i, n in enumerate(lengths)]
        with torch.no_grad():
            trace = trace_calls(model, [(b["input_ids"], b["attention_mask"]) for b in batches], dynamic=False)
        graphs[name] = trace.graphs
    assert graphs == {"bucketed": 3, "plain": 8}  # widths 8, 16, 32 against one graph per distinct batch width
