"""The Google/Hugging Face BERT encoder names -> core's ``TransformerStack`` module names, as rename rules.

Every BERT-shaped release (StructBERT, StructVBERT, StructuralLM, ...) names a post-LN layer the same way; these
rules serve :func:`alicemind.core.checkpoint.rename_keys` so a family does not write the table again.
"""

from __future__ import annotations

# Applied to keys relative to the encoder (``encoder.layer.{i}...``), in order.
BERT_LAYER_TO_CORE: list[tuple[str, str]] = [
    (r"^encoder\.layer\.(\d+)\.attention\.self\.query\.", r"encoder.layers.\1.self_attn.q_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.key\.", r"encoder.layers.\1.self_attn.k_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.value\.", r"encoder.layers.\1.self_attn.v_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"encoder.layers.\1.self_attn_norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"encoder.layers.\1.ffn.fc_in."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"encoder.layers.\1.ffn.fc_out."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"encoder.layers.\1.ffn_norm."),
]
# The inverse of BERT_LAYER_TO_CORE.
CORE_TO_BERT_LAYER: list[tuple[str, str]] = [
    (r"^encoder\.layers\.(\d+)\.self_attn\.q_proj\.", r"encoder.layer.\1.attention.self.query."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.k_proj\.", r"encoder.layer.\1.attention.self.key."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.v_proj\.", r"encoder.layer.\1.attention.self.value."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"^encoder\.layers\.(\d+)\.self_attn_norm\.", r"encoder.layer.\1.attention.output.LayerNorm."),
    (r"^encoder\.layers\.(\d+)\.ffn\.fc_in\.", r"encoder.layer.\1.intermediate.dense."),
    (r"^encoder\.layers\.(\d+)\.ffn\.fc_out\.", r"encoder.layer.\1.output.dense."),
    (r"^encoder\.layers\.(\d+)\.ffn_norm\.", r"encoder.layer.\1.output.LayerNorm."),
]
