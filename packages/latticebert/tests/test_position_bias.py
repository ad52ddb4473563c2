"""The lattice position bias against a plain-loop reference written from the formulas (models-multimodal 3.3,
errata 2), and the whole encoder against a step-by-step reference (bias in every layer, tanh GELU, post-LN)."""

from __future__ import annotations

import math

import torch
from labert_testing import tiny_config

from alicemind.latticebert import LatticeBertModel


def reference_bias(bias_module, starts: list[int], ends: list[int]) -> torch.Tensor:
    """bias[h, i, j] for query i and key j, one pair at a time."""
    m = bias_module
    heads, d, r = m.num_heads, m.head_dim, m.max_relative
    length = len(starts)
    out = torch.zeros(heads, length, length, dtype=torch.float64)

    def proj(linear, vec):
        return linear.weight.double() @ vec + linear.bias.double()

    def pos_vec(i):
        return torch.cat(
            [m.start_position_embeddings.weight[starts[i]], m.end_position_embeddings.weight[ends[i]]]
        ).double()

    def clip(x):
        return max(-r, min(r, x)) + r

    for h in range(heads):
        hs = slice(h * d, (h + 1) * d)
        theta_row = (
            proj(m.query_position, m.reset_theta_1.double())[hs] @ proj(m.key_position, m.reset_theta_1.double())[hs]
        ) / math.sqrt(d)
        theta_col = (
            proj(m.query_position, m.reset_theta_2.double())[hs] @ proj(m.key_position, m.reset_theta_2.double())[hs]
        ) / math.sqrt(d)
        for i in range(length):
            for j in range(length):
                if j == 0:
                    out[h, i, j] = theta_col
                    continue
                if i == 0:
                    out[h, i, j] = theta_row
                    continue
                q = proj(m.query_position, pos_vec(i))[hs]
                k = proj(m.key_position, pos_vec(j))[hs]
                value = float(q @ k) / math.sqrt(d)
                s_i, e_i, s_j, e_j = starts[i], ends[i], starts[j], ends[j]
                tables = m.relative_position_scores
                value += float(tables[0].weight[clip(s_j - s_i), h])
                value += float(tables[1].weight[clip(s_j - e_i), h])
                value += float(tables[2].weight[clip(e_j - s_i), h])
                value += float(tables[3].weight[clip(e_j - e_i), h])
                code = (1 if s_j >= s_i else 0) + (2 if s_j > e_i else 0) + (4 if e_j >= s_i else 0)
                code += (8 if e_j >= e_i else 0) + (16 if (s_j == s_i and e_j == e_i) else 0)
                value += float(m.relative_type_embeddings.weight[code, h])
                out[h, i, j] = value
    return out


def test_bias_equals_plain_loop_reference_on_nested_and_overlapping_words(tokenizer):
    torch.manual_seed(0)
    # Small clipping so that clipped distances occur in a short lattice.
    model = LatticeBertModel(tiny_config(tokenizer.vocab_size, max_relative_position=3)).eval()
    # 中国人民大学 nests 中国/人民/大学 inside the whole; 研究/研究生/生命 overlap.
    enc = tokenizer.encode("中国人民大学", "研究生命起源")
    assert (1, 6) in set(zip(enc.lattice.starts, enc.lattice.lengths))  # the nesting word, after [CLS]
    starts, ends = enc.starts, enc.ends
    with torch.no_grad():
        got = model.position_bias(torch.tensor([starts]), torch.tensor([ends]))[0].double()
        want = reference_bias(model.position_bias, starts, ends)
    assert got.shape == want.shape == (4, len(starts), len(starts))
    assert torch.allclose(got, want, atol=1e-6, rtol=0), float((got - want).abs().max())
    # Key before (0) / after (15) the query, the same span (29), key inside (5) / containing (12) the query, and
    # partial overlaps (4, 13): every bit of the code is exercised.
    s, e = torch.tensor(starts), torch.tensor(ends)
    codes = ((s[None] >= s[:, None]).long() + 2 * (s[None] > e[:, None]) + 4 * (e[None] >= s[:, None])
             + 8 * (e[None] >= e[:, None]) + 16 * ((s[None] == s[:, None]) & (e[None] == e[:, None])))  # fmt: skip
    assert {0, 4, 5, 12, 13, 15, 29} <= set(codes.unique().tolist())
    assert max(ends) - min(starts) > 3  # distances beyond the clip were compared


def test_direction_is_key_minus_query():
    torch.manual_seed(0)
    model = LatticeBertModel(tiny_config(50)).eval()
    bias = model.position_bias
    for table in bias.relative_position_scores:
        torch.nn.init.zeros_(table.weight)
    torch.nn.init.zeros_(bias.relative_type_embeddings.weight)
    for p in (bias.query_position.weight, bias.key_position.weight, bias.query_position.bias, bias.key_position.bias):
        torch.nn.init.zeros_(p)
    # Table 1 (start of key minus end of query) holds the distance itself, all heads.
    r = bias.max_relative
    bias.relative_position_scores[1].weight.data[:] = (torch.arange(2 * r + 1) - r).float()[:, None]
    starts, ends = torch.tensor([[0, 1, 3]]), torch.tensor([[0, 2, 5]])
    out = bias(starts, ends)[0, 0]
    assert out[1, 2].item() == 3 - 2  # key 2 starts at 3, query 1 ends at 2
    assert out[2, 1].item() == 1 - 5  # key 1 starts at 1, query 2 ends at 5


def reference_encoder(model: LatticeBertModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The released TF graph written out: factorised embedding (no bias), bias added in every layer before the
    -10000 mask, softmax, post-LN residuals, tanh GELU."""
    emb = model.embeddings
    x = emb.word_embeddings.weight[batch["input_ids"]] @ emb.word_projection.weight.T
    x = x + emb.token_type_embeddings.weight[batch["token_type_ids"]]
    x = torch.nn.functional.layer_norm(x, x.shape[-1:], emb.norm.weight, emb.norm.bias, 1e-12)
    bias = model.position_bias(batch["lattice_starts"], batch["lattice_ends"])
    adder = (1.0 - batch["attention_mask"][:, None, None, :].float()) * -10000.0
    b, length, hidden = x.shape
    heads = model.config.num_attention_heads
    d = hidden // heads
    for layer in model.encoder.layers:
        att = layer.self_attn

        def split(t):
            return t.view(b, length, heads, d).transpose(1, 2)

        q, k, v = split(att.q_proj(x)), split(att.k_proj(x)), split(att.v_proj(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias + adder
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, length, hidden)
        x = layer.self_attn_norm(x + att.out_proj(ctx))
        inner = layer.ffn.fc_in(x)
        inner = 0.5 * inner * (1 + torch.tanh(math.sqrt(2 / math.pi) * (inner + 0.044715 * inner**3)))
        x = layer.ffn_norm(x + layer.ffn.fc_out(inner))
    return x


def test_encoder_equals_reference_graph(tokenizer):
    torch.manual_seed(1)
    model = LatticeBertModel(tiny_config(tokenizer.vocab_size)).eval()
    batch = tokenizer(["中国人民大学", "研究生命"], ["北京", "上海工作"])
    with torch.no_grad():
        got = model(**batch).last_hidden_state
        want = reference_encoder(model, batch)
    real = batch["attention_mask"].bool()
    assert torch.allclose(got[real], want[real], atol=1e-5), float((got[real] - want[real]).abs().max())
    assert model.embeddings.word_projection.bias is None
