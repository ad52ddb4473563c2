"""PLUG generation over core.generation, with the original's quirks behind options (errata section 5):
the sliding window of ``generate_plug.py`` and its text post-processing. The double final encoder LayerNorm is
the config field ``encoder_final_norm_twice``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from alicemind.core.generation import GenerationConfig, generate
from alicemind.plug.config import PlugConfig
from alicemind.plug.model import PlugForConditionalGeneration
from alicemind.plug.tokenization import PlugTokenizer, original_detokenize, original_prompt


def load_for_generation(folder: str | Path, **config_overrides) -> PlugForConditionalGeneration:
    """The model on this process: whole (one process) or tensor-parallel over every rank of a torchrun launch,
    built on the meta device and filled with this rank's slices only."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return PlugForConditionalGeneration.from_pretrained(folder, **config_overrides).eval()
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from alicemind.plug.parallel import parallelize_plug

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mesh = init_device_mesh(device, (world,), mesh_dim_names=("tp",))
    config = PlugConfig.from_json_file(Path(folder) / "config.json", **config_overrides)
    with torch.device("meta"):
        model = PlugForConditionalGeneration(config)
    return parallelize_plug(model, mesh, weights=folder).eval()


def slide_context(prompt: Sequence[int], generated: Sequence[int], sep_id: int, max_length: int = 512) -> list[int]:
    """The next encoder input of the original's sliding window (``generate_plug.py`` 240-244): the generated ids
    are written *starting at* the prompt's first [SEP] (overwriting it), a new [SEP] follows, and the last
    ``max_length`` ids are kept."""
    start = list(prompt).index(sep_id) if sep_id in prompt else len(prompt)
    context = list(prompt[:start]) + list(generated) + [sep_id]
    return context[-max_length:]


def generate_long(
    model: PlugForConditionalGeneration,
    prompt: Sequence[int],
    config: GenerationConfig,
    *,
    total_tokens: int,
    window: int = 128,
    max_source_length: int = 512,
    generator: torch.Generator | None = None,
) -> list[int]:
    """``total_tokens`` ids from one prompt, the decoder restarting every ``window`` tokens on the slid context."""
    eos = model.config.eos_token_id
    generated: list[int] = []
    context = list(prompt)[-max_source_length:]
    while len(generated) < total_tokens:
        step = min(window, total_tokens - len(generated))
        step_config = GenerationConfig.from_dict({**config.to_dict(), "max_new_tokens": step, "max_length": None})
        ids = torch.tensor([context])
        out = generate(model, ids, torch.ones_like(ids), step_config, generator=generator)
        new = out.sequences[0, 1 : 1 + int(out.lengths[0])].tolist()
        ended = eos in new
        generated += new[: new.index(eos)] if ended else new
        if ended or not new:
            break
        context = slide_context(prompt, generated, eos, max_source_length)
    return generated


def render(tokenizer: PlugTokenizer, ids: Sequence[int], *, original: bool) -> str:
    """Text of generated ids: the original's rendering (runs of [UNK] -> one "“", no spaces) or WordPiece decode."""
    if original:
        tokens = [tokenizer.convert_ids_to_tokens(i) for i in ids]
        return original_detokenize([t for t in tokens if t not in ("[CLS]", "[SEP]", "[PAD]")])
    from alicemind.palm.tokenization import detokenize

    return detokenize(tokenizer.decode(list(ids), skip_special_tokens=True))


def prepare_prompt(text: str, *, original: bool) -> str:
    return original_prompt(text) if original else text
