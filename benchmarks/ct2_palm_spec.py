"""A CTranslate2 model built directly from a PALM (sofa-zh, pre-LN) model's weights, for the generation benchmark.

Two halves that run in different environments: :func:`export_arrays` (our venv, torch) writes the weights under
the names of CTranslate2's ``TransformerSpec``; :func:`build_ct2_model` (a venv with only ``ctranslate2`` and
numpy, see benchmarks/bench_generation_ct2.py) assembles and saves the spec from them. No converter is involved,
so transformers' version does not matter.

The mapping is exact except for one thing: sofa applies the encoder's final LayerNorm twice, CTranslate2 once.
With the random initialisation the benchmark uses (gamma 1, beta 0) the second norm is the identity up to its
epsilon, so the two models compute the same function; the token type 0 embedding is folded into the positions.
"""

from __future__ import annotations

from pathlib import Path

VOCAB_UNK, VOCAB_BOS, VOCAB_EOS = 100, 101, 102  # BERT-Chinese [UNK], [CLS], [SEP]: PALM's start and end tokens


def export_arrays(model, path: Path) -> None:
    """Write ``model``'s weights (a ``PalmForConditionalGeneration``, sofa-zh) as ``.npz`` with spec names."""
    import numpy as np
    import torch

    c = model.config
    if c.architecture != "sofa-zh" or not c.pre_ln or c.attn_separate or model.copy_gate is not None:
        raise ValueError("the CTranslate2 export covers the pre-LN sofa-zh PALM without pointer-generator only")
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}

    def norm(dst: str, src: str) -> None:
        out[f"{dst}.gamma"], out[f"{dst}.beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def linear(dst: str, src: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    words = sd["embeddings.word_embeddings.weight"]
    positions = sd["embeddings.position_embeddings.weight"][c.position_offset :]
    positions = positions + sd["embeddings.token_type_embeddings.weight"][0]
    for side in ("encoder", "decoder"):
        out[f"{side}.position_encodings.encodings"] = positions
        norm(f"{side}.layernorm_embedding", "embeddings.norm")
        norm(f"{side}.layer_norm", f"{side}.final_norm")
    out["encoder.embeddings_0.weight"] = words
    out["decoder.embeddings.weight"] = words
    out["decoder.projection.weight"] = words
    out["decoder.projection.bias"] = torch.zeros(words.shape[0])
    for side, count in (("encoder", c.num_hidden_layers), ("decoder", c.dec_hidden_layers)):
        for i in range(count):
            src, dst = f"{side}.layers.{i}", f"{side}.layer_{i}"
            norm(f"{dst}.self_attention.layer_norm", f"{src}.self_attn_norm")
            linear(f"{dst}.self_attention.linear_0", f"{src}.self_attn.qkv_proj")
            linear(f"{dst}.self_attention.linear_1", f"{src}.self_attn.out_proj")
            if side == "decoder":
                norm(f"{dst}.attention.layer_norm", f"{src}.cross_attn_norm")
                linear(f"{dst}.attention.linear_0", f"{src}.cross_attn.q_proj")
                linear(f"{dst}.attention.linear_1", f"{src}.cross_attn.kv_proj")
                linear(f"{dst}.attention.linear_2", f"{src}.cross_attn.out_proj")
            norm(f"{dst}.ffn.layer_norm", f"{src}.ffn_norm")
            linear(f"{dst}.ffn.linear_0", f"{src}.ffn.fc_in")
            linear(f"{dst}.ffn.linear_1", f"{src}.ffn.fc_out")
    meta = np.array([c.num_hidden_layers, c.dec_hidden_layers, c.num_attention_heads, c.vocab_size])
    np.savez(path, __meta__=meta, __eps__=np.array(c.layer_norm_eps), **{k: v.numpy() for k, v in out.items()})


def _set(spec, dotted: str, value) -> None:
    """Assign ``value`` at ``a.layer_3.b`` in a spec (``name_N`` is item N of the list attribute ``name``)."""
    *parents, leaf = dotted.split(".")
    node = spec
    for part in parents:
        head, _, index = part.rpartition("_")
        if head and index.isdigit() and isinstance(getattr(node, head, None), list):
            node = getattr(node, head)[int(index)]
        else:
            node = getattr(node, part)
    setattr(node, leaf, value)


def build_ct2_model(arrays: Path, output_dir: Path) -> None:
    """Assemble a CTranslate2 ``TransformerSpec`` from :func:`export_arrays`'s file and save it (fp32)."""
    import numpy as np
    from ctranslate2.specs import common_spec, transformer_spec

    data = np.load(arrays)
    enc_layers, dec_layers, heads, vocab = (int(x) for x in data["__meta__"])
    spec = transformer_spec.TransformerSpec.from_config(
        (enc_layers, dec_layers), heads, pre_norm=True, activation=common_spec.Activation.GELU,
        layernorm_embedding=True,
    )  # fmt: skip
    spec.encoder.scale_embeddings = False  # BERT embeddings are not multiplied by sqrt(hidden)
    spec.decoder.scale_embeddings = False
    for name in data.files:
        if not name.startswith("__"):
            _set(spec, name, np.ascontiguousarray(data[name]))
    spec.config.layer_norm_epsilon = float(data["__eps__"])
    spec.config.unk_token, spec.config.bos_token = str(VOCAB_UNK), str(VOCAB_BOS)
    spec.config.eos_token, spec.config.decoder_start_token = str(VOCAB_EOS), str(VOCAB_BOS)
    tokens = [str(i) for i in range(vocab)]
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    spec.validate()
    spec.optimize(quantization=None)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    spec.save(str(output_dir))
