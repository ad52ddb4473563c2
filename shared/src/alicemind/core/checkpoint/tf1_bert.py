"""Google BERT's TF1 variable names -> core's module names, for families whose releases are TF1 BERT graphs
(StructBERT, LatticeBERT, StructuralLM): one table of the encoder layer names, kernels marked for transposing."""

from __future__ import annotations

__all__ = ["BERT_LAYER_NAMES", "bert_layer_variables", "tf_dense", "tf_norm"]

# TF sub-scope of one encoder layer -> core TransformerBlock module (post-LN BERT block).
BERT_LAYER_NAMES = {
    "attention/self/query": "self_attn.q_proj",
    "attention/self/key": "self_attn.k_proj",
    "attention/self/value": "self_attn.v_proj",
    "attention/output/dense": "self_attn.out_proj",
    "attention/output/LayerNorm": "self_attn_norm",
    "intermediate/dense": "ffn.fc_in",
    "output/dense": "ffn.fc_out",
    "output/LayerNorm": "ffn_norm",
}


def tf_dense(tf: str, ours: str) -> dict[str, tuple[str, bool]]:
    """A TF dense layer -> ``{tf/kernel: (ours.weight, transpose=True), tf/bias: (ours.bias, False)}``."""
    return {f"{tf}/kernel": (f"{ours}.weight", True), f"{tf}/bias": (f"{ours}.bias", False)}


def tf_norm(tf: str, ours: str) -> dict[str, tuple[str, bool]]:
    """A TF LayerNorm -> ``{tf/gamma: (ours.weight, False), tf/beta: (ours.bias, False)}``."""
    return {f"{tf}/gamma": (f"{ours}.weight", False), f"{tf}/beta": (f"{ours}.bias", False)}


def bert_layer_variables(
    num_layers: int, *, tf_prefix: str = "bert/encoder", our_prefix: str = "encoder.layers"
) -> dict[str, tuple[str, bool]]:
    """TF name -> (our key, transpose?) for every variable of ``num_layers`` BERT encoder layers."""
    out: dict[str, tuple[str, bool]] = {}
    for layer in range(num_layers):
        for tf, ours in BERT_LAYER_NAMES.items():
            rule = tf_norm if tf.endswith("LayerNorm") else tf_dense
            out.update(rule(f"{tf_prefix}/layer_{layer}/{tf}", f"{our_prefix}.{layer}.{ours}"))
    return out
