"""``alicemind plug VERB``: convert, download, plan, generate, finetune."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import CliError, add_recipe_arguments, add_run_arguments, run_recipe_from_args
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released
from alicemind.core.cli.compiling import add_compile_arguments, maybe_optimize

DTYPES = ("float32", "float16", "bfloat16")


def _convert(args: argparse.Namespace) -> int:
    import torch

    from alicemind.plug.convert import convert_megatron

    prog = "alicemind plug convert"
    if not Path(args.src).exists():
        raise CliError(f"no checkpoint at {args.src}", prog=prog)
    try:
        out = convert_megatron(
            args.src,
            args.dst,
            max_shard_bytes=int(args.max_shard_gb * (1 << 30)),
            dtype=getattr(torch, args.dtype) if args.dtype else None,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (CheckpointError, ValueError) as err:
        raise CliError(str(err), prog=prog) from None
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = len(set(index["weight_map"].values()))
    print(f"read {args.src} -> wrote {out} ({files} safetensors files, {index['metadata']['total_size']:,} bytes)")
    return 0


def _download(args: argparse.Namespace) -> int:
    from alicemind.plug import hub  # noqa: F401  (registers the release)
    from alicemind.plug.convert import convert_megatron

    prog = "alicemind plug download"
    _, path = fetch_released(args.name, offline=args.offline, force=args.force, prog=prog)
    if not args.no_convert:
        try:
            out = convert_megatron(path, Path(args.output) if args.output else path.parent / "alicemind", progress=True)
        except CheckpointError as err:
            raise CliError(f"downloaded {path} but could not read it: {err}", prog=prog) from None
        print(f"converted -> {out}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from alicemind.plug.config import PlugConfig
    from alicemind.plug.plan import format_plan, memory_plan

    prog = "alicemind plug plan"
    if args.gpus < 1 or args.gpu_memory <= 0:
        raise CliError("--gpus must be >= 1 and --gpu-memory > 0", prog=prog)
    config = (
        PlugConfig.from_json_file(Path(args.model) / "config.json")
        if args.model
        else PlugConfig.from_preset(args.preset)
    )
    plans = memory_plan(config, args.gpus, args.gpu_memory, batch_size=args.batch_size,
                        source_length=args.source_length, target_length=args.target_length, num_beams=args.num_beams,
                        activation_checkpointing=not args.no_activation_checkpointing)  # fmt: skip
    if not plans:
        raise CliError(f"no tensor-parallel degree <= 8 divides {args.gpus} GPUs and the model's heads", prog=prog)
    print(json.dumps([p.row() for p in plans]) if args.json else format_plan(plans, args.gpu_memory))
    return 0


def _generate(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from alicemind.core.generation import GenerationConfig
    from alicemind.plug.generation import generate_long, load_for_generation, prepare_prompt, render
    from alicemind.plug.tokenization import PlugTokenizer

    prog = "alicemind plug generate"
    path = Path(args.input)
    if not path.is_file():
        raise CliError(f"input file not found: {path}", prog=prog)
    sources = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sources:
        raise CliError(f"{path} is empty: expected one prompt per line", prog=prog)
    if not (Path(args.model) / "config.json").is_file():
        raise CliError(
            f"{args.model} is not a PLUG model folder (no config.json); convert the release first", prog=prog
        )
    if args.compile and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # The tensor-parallel model's projections are DTensors and its logits are gathered across ranks: no
        # compile-clean test covers that path, so it runs eagerly rather than compiled untested.
        raise CliError("--compile runs in one process only; drop it under torchrun (tensor parallel)", prog=prog)
    model = maybe_optimize(load_for_generation(args.model, encoder_final_norm_twice=not args.single_final_norm), args)
    tokenizer = PlugTokenizer.from_pretrained(args.tokenizer or args.model)
    values = {**model.generation_defaults(), "do_sample": args.sample, "num_beams": args.num_beams,
              "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
              "length_penalty": args.length_penalty}  # fmt: skip
    if args.original:  # [SEP] accepted only after 80% of the requested length (PLUG/predict.py)
        values["min_length"] = int(0.8 * args.max_new_tokens)
    config = GenerationConfig.from_dict(values)
    generator = torch.Generator().manual_seed(args.seed)  # the same seed on every rank: the same tokens
    outputs = []
    for text in sources:
        ids = tokenizer(
            prepare_prompt(text, original=args.original), truncation=True, max_length=args.max_source_length
        )
        ids = ids["input_ids"]
        window = args.window if args.sliding_window else args.max_new_tokens
        new = generate_long(model, ids, config, total_tokens=args.max_new_tokens, window=window,
                            max_source_length=args.max_source_length, generator=generator)  # fmt: skip
        outputs.append(render(tokenizer, new, original=args.original))
    if not dist.is_initialized() or dist.get_rank() == 0:
        text = "\n".join(outputs) + "\n"
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            print(text, end="")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _load_plug(spec, tokenizer=None, **overrides):
    from alicemind.plug.model import PlugForConditionalGeneration
    from alicemind.plug.tokenization import PlugTokenizer

    model = PlugForConditionalGeneration.from_pretrained(spec, **overrides)
    return model, PlugTokenizer.from_pretrained(tokenizer or spec), Path(spec)


def _finetune(args: argparse.Namespace) -> int:
    from alicemind.plug.finetune import finetune_generation, is_main, use_sharded_engine

    prog = "alicemind plug finetune"
    recipe = run_recipe_from_args("plug", args)
    if not recipe.get("model"):
        raise CliError("set model=FOLDER (a converted PLUG model)", prog=prog)
    if not (Path(recipe["model"]) / "config.json").is_file():
        raise CliError(f"{recipe['model']} is not a PLUG model folder (no config.json)", prog=prog)
    try:
        if "task" in recipe:  # CLUE classification recipes (always the sharded engine)
            from alicemind.plug.classify import finetune_classification

            result = finetune_classification(recipe)
        elif use_sharded_engine(recipe):  # torchrun / tensor parallel: meta-device build, DCP checkpoints
            result = finetune_generation(recipe)
        else:
            result = None
    except (ValueError, FileNotFoundError) as err:  # a layout that does not fit the model, unreadable data
        raise CliError(str(err), prog=prog) from None
    if result is None:
        from alicemind.palm.runner import finetune

        result = finetune(recipe, load=_load_plug)
    if is_main():
        print(json.dumps(result, indent=1))
    return 0


def register(subparsers) -> None:
    """Add ``plug`` and its verbs to the ``alicemind`` command."""
    parser = subparsers.add_parser(
        "plug", help="PLUG 27B: convert the Megatron release, plan memory, generate, fine-tune"
    )
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser(
        "convert", help="merge the released mp_rank_XX_model_states.pt shards into sharded safetensors"
    )
    p.add_argument("src", help="plug_model/ (with config.json, vocab.txt, 28000/) or the iteration folder itself")
    p.add_argument("dst", help="output folder: config.json, model-*.safetensors, index, vocab.txt")
    p.add_argument("--max-shard-gb", type=float, default=2.0, help="largest output file (default 2 GiB)")
    p.add_argument("--dtype", choices=DTYPES, help="store weights in this dtype (default: as released, fp16)")
    p.add_argument("--overwrite", action="store_true", help="replace DST even if it holds files a save does not write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_convert)

    p = verbs.add_parser("download", help="fetch plug.27b (the release needs an application: see 'alicemind list')")
    add_download_arguments(p)
    p.set_defaults(func=_download)

    p = verbs.add_parser("plan", help="GPU memory per TP x FSDP layout for inference and fine-tuning")
    p.add_argument("--gpus", type=int, required=True, help="GPUs in the job")
    p.add_argument("--gpu-memory", type=float, required=True, help="memory of one GPU in GiB")
    p.add_argument("--preset", default="plug.27b", help="registered size (default plug.27b)")
    p.add_argument("--model", help="plan for this model folder's config instead of a preset")
    p.add_argument("--batch-size", type=int, default=1, help="sequences per data-parallel rank")
    p.add_argument("--source-length", type=int, default=512)
    p.add_argument("--target-length", type=int, default=128)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--no-activation-checkpointing", action="store_true")
    p.add_argument("--json", action="store_true", help="machine-readable rows (GiB)")
    p.set_defaults(func=_plan)

    p = verbs.add_parser(
        "generate",
        help="continue each input line (torchrun --nproc_per_node N for N-way tensor parallelism)",
        description="Runs in one process, or under torchrun with the model split tensor-parallel over all ranks "
        "(each rank loads only its slices). Defaults follow PLUG/predict.py: sampling T 0.9, top-k 20.",
    )
    p.add_argument("--model", required=True, help="converted model folder")
    p.add_argument("--input", required=True, help="text file, one prompt per line")
    p.add_argument("--output", help="write here instead of stdout")
    p.add_argument("--tokenizer", help="folder with vocab.txt (default: the model folder)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--max-source-length", type=int, default=512)
    p.add_argument("--greedy", dest="sample", action="store_false", help="greedy (or beam) instead of sampling")
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--length-penalty", type=float, default=0.6)
    p.add_argument("--temperature", type=float, default=0.9)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument(
        "--single-final-norm",
        action="store_true",
        help="apply the encoder's final LayerNorm once (the original applies it twice at inference)",
    )
    p.add_argument(
        "--sliding-window",
        action="store_true",
        help="the original's restart every --window tokens on the prompt plus the generated text",
    )
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--original", action="store_true",
                   help="the original's text handling: quote rewriting, [SEP] only after 80%% of the length, "
                   "[UNK] runs as one “, no spaces")  # fmt: skip
    add_compile_arguments(p)
    p.set_defaults(func=_generate, sample=True)

    p = verbs.add_parser(
        "finetune",
        help="fine-tune (generation or CLUE classification recipes), then evaluate; any TP x FSDP2 layout",
        description="Generation recipes (finetune-dureader-robust) train on source<TAB>target pairs; classification "
        "recipes (clue-afqmc ... clue-cluewsc2020, classify for your own files) on a CLUE task folder or your files. "
        "Under torchrun, or with parallel.tp > 1, the model is built on the meta device, each rank reads its "
        "slices, parallel.tp ranks hold one tensor-parallel replica and the rest are FSDP2 data-parallel; "
        "checkpoints are torch.distributed.checkpoint folders that resume at any other layout "
        "(+training.resume=RUN/checkpoint-N).",
    )
    add_recipe_arguments(p, example="finetune-dureader-robust")
    add_run_arguments(p)
    p.set_defaults(func=_finetune)
