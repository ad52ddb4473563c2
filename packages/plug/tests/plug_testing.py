"""Test helpers: tiny PLUG configs and synthetic releases written in the exact released layout (reference
models-language.md section 4.4): ``plug_model/{config.json,vocab.txt}`` and ``28000/mp_rank_XX_model_states.pt``
DeepSpeed dicts whose ``module`` is each rank's Megatron slice of ``PalmForPreTraining``'s state dict."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from alicemind.plug import PlugConfig

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=8, intermediate_size=64, dec_hidden_layers=2,
            vocab_size=128, real_vocab_size=120, max_position_embeddings=64)  # fmt: skip


def tiny_config(**overrides) -> PlugConfig:
    return PlugConfig.from_preset("plug.tiny", **overrides)


def released_state_dict(c: PlugConfig, seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Every key of the released ``module`` with its whole (unsharded) shape, random values."""
    g = torch.Generator().manual_seed(seed)
    h, f, v = c.hidden_size, c.intermediate_size, c.vocab_size
    shapes: dict[str, tuple[int, ...]] = {
        "bert.embeddings.word_embeddings.weight": (v, h),
        "bert.embeddings.position_embeddings.weight": (c.max_position_embeddings, h),
        "bert.embeddings.token_type_embeddings.weight": (c.type_vocab_size, h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
    }
    for i in range(c.num_hidden_layers):
        p = f"bert.encoder.layer.{i}."
        shapes.update({
            p + "attention.LayerNorm.weight": (h,), p + "attention.LayerNorm.bias": (h,),
            p + "attention.self.query_key_value.weight": (3 * h, h), p + "attention.self.query_key_value.bias": (3 * h,),
            p + "attention.output.dense.weight": (h, h), p + "attention.output.dense.bias": (h,),
            p + "LayerNorm.weight": (h,), p + "LayerNorm.bias": (h,),
            p + "intermediate.dense.weight": (f, h), p + "intermediate.dense.bias": (f,),
            p + "output.dense.weight": (h, f), p + "output.dense.bias": (h,),
        })  # fmt: skip
    shapes.update({
        "bert.encoder.LayerNorm.weight": (h,), "bert.encoder.LayerNorm.bias": (h,),
        "bert.pooler.dense.weight": (h, h), "bert.pooler.dense.bias": (h,),
        "cls.predictions.transform.dense.weight": (h, h), "cls.predictions.transform.dense.bias": (h,),
        "cls.predictions.transform.LayerNorm.weight": (h,), "cls.predictions.transform.LayerNorm.bias": (h,),
        "cls.predictions.bias": (v,), "cls.predictions.decoder_weight": (v, h),
        "cls.seq_relationship.weight": (3, h), "cls.seq_relationship.bias": (3,),
    })  # fmt: skip
    for j in range(c.dec_hidden_layers):
        p = f"decoder.decoder.layer.{j}."
        for norm in ("input_layernorm", "post_attention_layernorm", "post_cross_attention_layernorm"):
            shapes.update({p + norm + ".weight": (h,), p + norm + ".bias": (h,)})
        shapes.update({
            p + "attention.query_key_value.weight": (3 * h, h), p + "attention.query_key_value.bias": (3 * h,),
            p + "attention.dense.weight": (h, h), p + "attention.dense.bias": (h,),
            p + "cross_attention.query.weight": (h, h), p + "cross_attention.query.bias": (h,),
            p + "cross_attention.key_value.weight": (2 * h, h), p + "cross_attention.key_value.bias": (2 * h,),
            p + "cross_attention.dense.weight": (h, h), p + "cross_attention.dense.bias": (h,),
            p + "intermediate.weight": (f, h), p + "intermediate.bias": (f,),
            p + "output.weight": (h, f), p + "output.bias": (h,),
        })  # fmt: skip
    shapes.update({"decoder.decoder.final_layernorm.weight": (h,), "decoder.decoder.final_layernorm.bias": (h,)})
    state = {k: (torch.randn(s, generator=g) * 0.1).to(dtype) for k, s in shapes.items()}
    state["cls.predictions.decoder_weight"] = state["bert.embeddings.word_embeddings.weight"].clone()  # tied
    return state


def megatron_slice(key: str, tensor: torch.Tensor, rank: int, degree: int) -> torch.Tensor:
    """Rank ``rank``'s slice as Megatron's mpu layers hold it (written out per kind, independently of the
    library's rule table): fused QKV keeps [q_r; k_r; v_r], the cross key_value [k_r; v_r]."""

    def rows(t):
        return t.chunk(degree, dim=0)[rank]

    if key.endswith(("query_key_value.weight", "query_key_value.bias")):
        return torch.cat([rows(part) for part in tensor.chunk(3, dim=0)])
    if key.endswith(("key_value.weight", "key_value.bias")):
        return torch.cat([rows(part) for part in tensor.chunk(2, dim=0)])
    vocab = ("word_embeddings.weight", "cls.predictions.bias", "cls.predictions.decoder_weight")
    column = ("intermediate.dense.weight", "intermediate.dense.bias", "intermediate.weight", "intermediate.bias",
              "cross_attention.query.weight", "cross_attention.query.bias")  # fmt: skip
    if key.endswith(vocab + column):
        return rows(tensor).clone()
    row_parallel = ("attention.output.dense.weight", "attention.dense.weight", "cross_attention.dense.weight")
    is_ffn_out = (key.startswith("bert.encoder.layer.") and key.endswith(".output.dense.weight")) or (
        key.startswith("decoder.decoder.layer.") and key.endswith(".output.weight")
    )
    if key.endswith(row_parallel) or is_ffn_out:
        return tensor.chunk(degree, dim=-1)[rank].clone()
    return tensor.clone()  # replicated: norms, positions, types, pooler, transform, seq_relationship, row biases


def sofa_config_json(c: PlugConfig) -> dict:
    """The released config.json's fields (ModelScope's copy of it), with this model's sizes."""
    return {
        "model_type": "plug_nlg_original-8192", "vocab_size": c.vocab_size, "original_vocab_size": c.real_vocab_size,
        "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads, "intermediate_size": c.intermediate_size,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": c.max_position_embeddings, "type_vocab_size": c.type_vocab_size,
        "initializer_range": 0.00707, "deep_init": False, "deepspeed": True, "lr_decay_style": "linear",
        "weight_decay": 0.01, "clip_grad": 1.0, "warmup": 0.01, "pre_ln": True, "fp16": True,
        "fp32_layernorm": True, "fp32_embedding": False, "fp32_tokentypes": False, "layernorm_epsilon": 1e-5,
        "dec_hidden_layers": c.dec_hidden_layers, "attn_separate": False, "load_iteration": 28000,
    }  # fmt: skip


def write_release(root: Path, c: PlugConfig, state: dict[str, torch.Tensor], degree: int = 8,
                  iteration: int = 28000) -> Path:  # fmt: skip
    """``root/plug_model`` in the released layout; returns that folder."""
    folder = root / "plug_model"
    (folder / str(iteration)).mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(sofa_config_json(c)))
    write_vocab(folder / "vocab.txt", c.real_vocab_size)
    for rank in range(degree):
        write_shard(folder / str(iteration), rank, degree, {k: megatron_slice(k, t, rank, degree) for k, t in state.items()},
                    iteration)  # fmt: skip
    return folder


def write_vocab(path: Path, size: int) -> Path:
    """A BERT-Chinese-like vocab.txt: [PAD], [unused*], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, CJK chars."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [chr(0x4E00 + i) for i in range(size - len(tokens))]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def write_shard(folder: Path, rank: int, degree: int, module: dict, iteration: int = 28000) -> Path:
    """One DeepSpeed model-states file with the released top-level entries."""
    path = folder / f"mp_rank_{rank:02d}_model_states.pt"
    torch.save(
        {"module": module, "optimizer": None, "lr_scheduler": None, "csr_tensor_module_names": [],
         "skipped_steps": 0, "global_steps": iteration, "global_samples": iteration * 32, "dp_world_size": 1,
         "mp_world_size": degree},
        path,
    )  # fmt: skip
    return path


# Every target two characters: per-rank mean token losses then average to the whole batch's (FSDP == one process).
FINETUNE_PAIRS = ["一丁七\t万丈", "七万\t一丁", "丈七\t七万", "万一\t丁丁"]


def write_finetune_data(out: Path) -> None:
    """Tiny source<TAB>target files for the finetune verb (``train.tsv`` 8 pairs, ``dev.tsv`` 2)."""
    (out / "train.tsv").write_text("\n".join(FINETUNE_PAIRS * 2) + "\n", encoding="utf-8")
    (out / "dev.tsv").write_text("\n".join(FINETUNE_PAIRS[:2]) + "\n", encoding="utf-8")


def finetune_args(model: Path, data: Path, output: Path, *extra: str, batch: int = 4) -> list[str]:
    """``alicemind plug finetune`` on the sharded engine: 3 float64 steps without dropout, a checkpoint every
    step, every loss logged, greedy evaluation on dev.tsv."""
    return ["plug", "finetune", "--recipe", "finetune-dureader-robust", f"model={model}",
            f"data.train={data / 'train.tsv'}", f"data.valid={data / 'dev.tsv'}", "data.max_target_length=6",
            "training.num_epochs=null", "+training.max_steps=3", f"training.per_device_batch_size={batch}",
            "+training.progress_bar=false", "training.precision=fp32", "+training.device=cpu", "training.lr=1e-3",
            f"training.output_dir={output}", "training.log_every=1", "+training.save_every=1",
            "+training.keep_last_n=null", "+training.keep_final_checkpoint=true", "generation.num_beams=1",
            "generation.max_new_tokens=4", "generation.min_length=0", "parallel.sharded=true",
            "parallel.dtype=float64", "+config.hidden_dropout_prob=0", "+config.attention_probs_dropout_prob=0",
            *extra]  # fmt: skip


def logged_losses(run: Path) -> dict[int, float]:
    """step -> training loss from a run's metrics.jsonl."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


CLASSIFY_ROWS = [("一丁", "一丁", "1"), ("七万", "丈一", "0"), ("万丈", "万丈", "1"), ("丁七", "万一", "0")]


def write_afqmc(folder: Path) -> Path:
    """A tiny AFQMC task folder in CLUE's layout (``train.json`` 8 rows, ``dev.json`` 4)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", CLASSIFY_ROWS * 2), ("dev", CLASSIFY_ROWS)):
        lines = [json.dumps({"id": i, "sentence1": a, "sentence2": b, "label": y}) for i, (a, b, y) in enumerate(rows)]
        (folder / f"{split}.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def classify_args(recipe: str, model: Path, output: Path, *extra: str, steps: int = 12) -> list[str]:
    """``alicemind plug finetune --recipe RECIPE`` (a classification one) on tiny data: no dropout, every loss
    logged; pass ``data_dir=`` or ``data.train=`` in ``extra``."""
    return ["plug", "finetune", "--recipe", recipe, f"model={model}", "training.num_epochs=null", f"+training.max_steps={steps}", "training.per_device_batch_size=4",
            "+training.progress_bar=false", "training.precision=fp32", "+training.device=cpu",
            f"training.output_dir={output}", "training.log_every=1", "training.lr=2e-3",
            "+config.hidden_dropout_prob=0", "+config.attention_probs_dropout_prob=0", *extra]  # fmt: skip
