"""core.layers: every option that a family relies on, checked against explicit reference computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from alicemind.core.layers import (
    BlockSpec,
    ClassificationHead,
    KVCache,
    LayoutEmbeddings,
    MaskedLMHead,
    MultiHeadAttention,
    PackedBatch,
    PatchEmbedding,
    SequenceTooLongError,
    SinusoidalPositions,
    TextEmbeddings,
    TransformerStack,
    build_attention_mask,
    causal_mask,
    get_activation,
    group_rows_by_source,
)


def _spec(**kw):
    base = dict(hidden_size=32, num_heads=4, intermediate_size=64, dropout=0.0, attention_dropout=0.0)
    return BlockSpec(**{**base, **kw})


def _reference_attention(attn: MultiHeadAttention, x, kv=None, additive=None):
    """Textbook softmax(QK^T/sqrt(d) + bias) V with explicit matmuls."""
    kv = x if kv is None else kv
    if attn.cross:
        q = attn.q_proj(x)
        k, v = (attn.kv_proj(kv).chunk(2, -1)) if attn.fused else (attn.k_proj(kv), attn.v_proj(kv))
    elif attn.fused:
        q, k, v = attn.qkv_proj(x).chunk(3, -1)
    else:
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    B, T, H = q.shape
    h, d = attn.num_heads, attn.head_dim

    def split(t):
        return t.view(B, -1, h, d).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d)
    if additive is not None:
        scores = scores + additive
    out = scores.softmax(-1) @ split(v)
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, H))


@pytest.mark.parametrize("fused", [False, True])
def test_self_attention_matches_textbook(fused):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, fused=fused).eval()
    x = torch.randn(2, 6, 32)
    torch.testing.assert_close(attn(x), _reference_attention(attn, x), atol=1e-5, rtol=1e-5)


def test_additive_bias_is_shared_and_applied():
    """LatticeBERT adds one per-head bias (computed once) to every layer's scores."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 5, 32)
    bias = torch.randn(2, 4, 5, 5)
    pad = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    mask = build_attention_mask(pad, 5, bias=bias)
    expected = _reference_attention(attn, x, additive=bias.masked_fill(~pad[:, None, None, :], float("-inf")))
    torch.testing.assert_close(attn(x, mask=mask), expected, atol=1e-5, rtol=1e-5)


def _cross_attention_case(fused: bool, rows: int, q_len: int):
    """A cross-attention layer, ``rows`` queries of ``q_len`` tokens, 2 encoder sources (the first padded)."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, cross=True, kv_size=16, fused=fused).eval()
    pad = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    return attn, torch.randn(rows, q_len, 32), torch.randn(2, 5, 16), pad


@pytest.mark.parametrize("fused", [False, True])
def test_cross_attention_ignores_padded_encoder_positions(fused):
    attn, x, enc, pad = _cross_attention_case(fused, rows=2, q_len=3)
    mask = build_attention_mask(pad, 3)
    out = attn(x, mask=mask, kv_states=enc)
    enc2 = enc.clone()
    enc2[0, 3:] = 100.0  # garbage in padded positions must not matter
    torch.testing.assert_close(attn(x, mask=mask, kv_states=enc2), out)
    torch.testing.assert_close(out[:1], _reference_attention(attn, x[:1], enc[:1, :3]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fused", [False, True])
def test_beams_share_their_source_keys_values_in_cross_attention(fused):
    # 2 sources x 3 beams: the beams' queries read their source's single copy of the keys/values.
    attn, x, enc, pad = _cross_attention_case(fused, rows=6, q_len=2)
    with torch.no_grad():
        shared = attn(x, mask=build_attention_mask(pad, 2), static_kv=attn.project_kv(enc))
        rows = torch.arange(2).repeat_interleave(3)
        copied = attn(x, mask=build_attention_mask(pad[rows], 2), kv_states=enc[rows])
        alone = _reference_attention(attn, x[3:], enc[1:].expand(3, -1, -1))
    torch.testing.assert_close(shared, copied, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(shared[3:], alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot be split into groups"):
        attn(x[:5], static_kv=attn.project_kv(enc))
    with pytest.raises(ValueError, match="mask must be per source"):
        attn(x, mask=build_attention_mask(pad[rows], 2), static_kv=attn.project_kv(enc))


def test_group_rows_by_source():
    sources, group = group_rows_by_source(torch.tensor([4, 4, 4, 1, 1, 1]))
    assert sources.tolist() == [4, 1] and group == 3
    sources, group = group_rows_by_source(torch.tensor([0, 2, 5]))
    assert sources.tolist() == [0, 2, 5] and group == 1
    assert group_rows_by_source(torch.tensor([0, 0, 1, 1, 1])) is None  # unequal groups
    assert group_rows_by_source(torch.tensor([0, 0, 1, 2])) is None  # groups of 2 broken by 1, 2


def test_build_attention_mask_none_when_nothing_to_mask():
    assert build_attention_mask(torch.ones(2, 4, dtype=torch.bool), 4) is None
    assert build_attention_mask(None, 4) is None
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_kv_cache_grows_and_reorders():
    cache = KVCache.empty(2, 1, 2, capacity=1, dtype=torch.float32, device="cpu")
    for step in range(5):
        k = torch.full((2, 1, 1, 2), float(step))
        k[1] += 10
        keys, _ = cache.append(k, k)
    assert cache.length == 5 and keys.shape == (2, 1, 5, 2)
    assert keys[0, 0, :, 0].tolist() == [0, 1, 2, 3, 4]
    cache.index_select(torch.tensor([1, 1, 0]))
    assert cache.key[:, 0, :5, 0].tolist() == [[10, 11, 12, 13, 14]] * 2 + [[0, 1, 2, 3, 4]]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_incremental_decoding_equals_full_recompute(fused, norm_first):
    torch.manual_seed(0)
    spec = _spec(norm_first=norm_first, fused_qkv=fused, cross_attention=True, cross_kv_size=24)
    dec = TransformerStack(spec, 2).eval()
    enc = torch.randn(2, 5, 24)
    enc_pad = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    x = torch.randn(2, 7, 32)
    full = dec(x, causal=True, encoder_states=enc, encoder_padding_mask=enc_pad).last_hidden_state
    caches = dec.init_caches(2, 2, enc)  # capacity 2 forces the cache to grow
    steps = [dec(x[:, :3], causal=True, encoder_padding_mask=enc_pad, caches=caches).last_hidden_state]
    for t in range(3, 7):
        steps.append(dec(x[:, t : t + 1], causal=True, encoder_padding_mask=enc_pad, caches=caches).last_hidden_state)
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-5


def test_causal_stack_does_not_look_ahead():
    torch.manual_seed(0)
    dec = TransformerStack(_spec(norm_first=True), 2).eval()
    x = torch.randn(1, 6, 32)
    a = dec(x, causal=True).last_hidden_state
    x2 = x.clone()
    x2[:, 4:] = torch.randn(1, 2, 32)
    b = dec(x2, causal=True).last_hidden_state
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_free_equals_padded_and_skips_padding(norm_first):
    torch.manual_seed(0)
    stack = TransformerStack(_spec(norm_first=norm_first), 3).eval()
    lengths = torch.tensor([9, 4, 1, 6])
    pad = torch.arange(9)[None] < lengths[:, None]
    x = torch.randn(4, 9, 32)
    seen = []
    hook = stack.layers[0].ffn.fc_in.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    padded = stack(x, padding_mask=pad).last_hidden_state
    packed = stack(x, padding_mask=pad, padding_free=True).last_hidden_state
    hook.remove()
    assert seen[1] == int(lengths.sum())  # the FFN saw only the 20 real tokens, not 36
    diff = ((padded - packed) * pad[..., None]).abs().max()
    assert diff < 1e-5
    assert packed[~pad].abs().max() == 0


def test_default_packs_ragged_batches_in_eager_training_steps_only():
    """``padding_free`` unset: an eager training step on a ragged batch runs on the real tokens (gradients equal
    the padded step's); evaluation and a compiled training step keep the padded path."""
    torch.manual_seed(0)
    stack = TransformerStack(_spec(), 2)
    assert stack.padding_free is None
    pad = torch.arange(7)[None] < torch.tensor([7, 3, 5])[:, None]
    x = torch.randn(3, 7, 32)
    rows = []
    stack.layers[0].ffn.fc_in.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))

    def step(**kw):
        stack.zero_grad()
        out = stack(x, padding_mask=pad, **kw).last_hidden_state
        (out * pad[..., None]).square().sum().backward()
        return out, [p.grad.clone() for p in stack.parameters()]

    packed, packed_grads = step()
    padded, padded_grads = step(padding_free=False)
    assert rows == [15, 3]  # the default step saw the 15 real tokens; padding_free=False all 3 rows
    torch.testing.assert_close(packed[pad], padded[pad], atol=1e-5, rtol=1e-5)
    for got, want in zip(packed_grads, padded_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    stack.eval()
    with torch.no_grad():
        stack(x, padding_mask=pad)
    assert rows[-1] == 3  # evaluation: padded
    stack.train()
    compiled = torch.compile(
        lambda t, m: stack(t, padding_mask=m).last_hidden_state, backend="aot_eager", fullgraph=True
    )
    torch.testing.assert_close(compiled(x, pad)[pad], padded[pad], atol=1e-5, rtol=1e-5)
    assert rows[-1] == 3  # traced: padded, so the graph's shapes do not depend on the data


def test_packed_batch_round_trip():
    pad = torch.tensor([[1, 1, 0], [1, 1, 1]]).bool()
    packed = PackedBatch.from_mask(pad)
    x = torch.arange(6.0).view(2, 3, 1)
    flat = packed.pack(x)
    assert flat.flatten().tolist() == [0, 1, 3, 4, 5]
    assert packed.cu_seqlens.tolist() == [0, 2, 5] and packed.max_seqlen == 3
    assert packed.unpack(flat).flatten().tolist() == [0, 1, 0, 3, 4, 5]


def test_post_ln_block_matches_bert_formula():
    torch.manual_seed(0)
    stack = TransformerStack(_spec(norm_first=False), 1).eval()
    block = stack.layers[0]
    x = torch.randn(2, 5, 32)
    h = block.self_attn_norm(x + _reference_attention(block.self_attn, x))
    expected = block.ffn_norm(h + block.ffn.fc_out(F.gelu(block.ffn.fc_in(h))))
    torch.testing.assert_close(stack(x).last_hidden_state, expected, atol=1e-5, rtol=1e-5)
    assert stack.final_norm is None


def test_pre_ln_block_matches_formula_and_has_final_norm():
    torch.manual_seed(0)
    stack = TransformerStack(_spec(norm_first=True, activation="gelu_tanh"), 1).eval()
    block = stack.layers[0]
    x = torch.randn(2, 5, 32)
    h = x + _reference_attention(block.self_attn, block.self_attn_norm(x))
    h = h + block.ffn.fc_out(F.gelu(block.ffn.fc_in(block.ffn_norm(h)), approximate="tanh"))
    torch.testing.assert_close(stack(x).last_hidden_state, stack.final_norm(h), atol=1e-5, rtol=1e-5)


def test_text_embeddings_offset_scale_and_too_long():
    torch.manual_seed(0)
    emb = TextEmbeddings(
        50,
        16,
        max_positions=10,
        type_vocab_size=0,
        pad_token_id=1,
        position_offset=2,
        layer_norm=False,
        dropout=0.0,
        scale=4.0,
    )
    ids = torch.tensor([[5, 6, 7]])
    expected = emb.word_embeddings(ids) * 4.0 + emb.position_embeddings(torch.tensor([[2, 3, 4]]))
    torch.testing.assert_close(emb(ids), expected)
    assert emb.max_positions == 8
    with pytest.raises(SequenceTooLongError, match="longer than the model's 8"):
        emb(torch.zeros(1, 9, dtype=torch.long))


def test_factorised_embeddings_project_to_hidden():
    emb = TextEmbeddings(50, 32, embedding_size=8, dropout=0.0)
    assert emb.word_embeddings.weight.shape == (50, 8)
    assert emb(torch.tensor([[1, 2]])).shape == (1, 2, 32)


def test_sinusoidal_positions_values():
    pos = SinusoidalPositions(4, max_len=10)
    table = pos(3, past_length=1)[0]
    assert table.shape == (3, 4)
    assert math.isclose(table[0, 0].item(), math.sin(1.0), rel_tol=1e-6)
    assert math.isclose(table[1, 1].item(), math.cos(2.0), rel_tol=1e-6)
    assert math.isclose(table[2, 2].item(), math.sin(3 / 100), rel_tol=1e-5)


def test_layout_embeddings_separate_and_shared():
    torch.manual_seed(0)
    box = torch.tensor([[[10, 20, 30, 60]]])
    sep = LayoutEmbeddings(8, max_coordinate=100)
    expected = sep.x0_embeddings.weight[10] + sep.y0_embeddings.weight[20] + sep.x1_embeddings.weight[30]
    expected = expected + sep.y1_embeddings.weight[60]
    torch.testing.assert_close(sep(box)[0, 0], expected)
    shared = LayoutEmbeddings(8, max_coordinate=100, separate_tables=False)
    w = shared.x_embeddings.weight
    expected = w[10] + w[30] + shared.y_embeddings.weight[20] + shared.y_embeddings.weight[60]
    expected = expected + shared.h_embeddings.weight[40] + shared.w_embeddings.weight[20]
    torch.testing.assert_close(shared(box)[0, 0], expected)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        sep(torch.tensor([[[0, 0, 101, 5]]]))


def test_patch_embedding_equals_unfolded_matmul():
    torch.manual_seed(0)
    patch = PatchEmbedding(8, 4, 16, in_channels=3)
    img = torch.randn(2, 3, 8, 8)
    out = patch(img)
    assert out.shape == (2, 5, 16)
    cols = F.unfold(img, kernel_size=4, stride=4).transpose(1, 2)  # [B, 4 patches, 3*4*4]
    manual = cols @ patch.proj.weight.flatten(1).T + patch.proj.bias
    torch.testing.assert_close(out[:, 1:], manual + patch.position_embeddings[:, 1:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="8x8"):
        patch(torch.randn(1, 3, 16, 16))


def test_mlm_head_ties_weights_and_classification_head_multi_task():
    emb = torch.nn.Embedding(30, 16)
    head = MaskedLMHead(16, 30)
    head.tie_to(emb)
    assert head.decoder.weight is emb.weight
    assert head(torch.randn(2, 16)).shape == (2, 30)
    clf = ClassificationHead(16, [3, 1, 2])
    logits = clf(torch.randn(4, 16))
    assert [t.shape[-1] for t in logits] == [3, 1, 2]
    with pytest.raises(ValueError):
        ClassificationHead(16, [])


def test_activation_lookup():
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(get_activation("gelu")(x), F.gelu(x))
    torch.testing.assert_close(get_activation("quick_gelu")(x), x * torch.sigmoid(1.702 * x))
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("nope")
