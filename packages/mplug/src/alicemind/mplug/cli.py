"""``alicemind mplug ...``: convert, download, pretrain, finetune, evaluate, caption, ask, reproduce."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import CliError, add_recipe_arguments, add_run_arguments, recipe_from_args, run_recipe_from_args
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released
from alicemind.core.cli.compiling import add_compile_arguments, compile_scope, maybe_optimize

TASK_CLASSES = {
    "caption": "MPlugForCaption",
    "vqa": "MPlugForVQA",
    "retrieval": "MPlugForRetrieval",
    "grounding": "MPlugForGrounding",
    "pretrain": "MPlugForPreTraining",
}


def _task_class(task: str):
    import alicemind.mplug as mp

    return getattr(mp, TASK_CLASSES[task])


def _convert_to(
    src: Path, dst: Path, task: str, overwrite: bool, prog: str, image_size: int | None = None, sets=None
) -> None:
    from alicemind.core.io import check_replaceable

    if not src.exists():
        raise CliError(f"no checkpoint at {src}", prog=prog)
    check_replaceable(dst, overwrite=overwrite)
    overrides = dict(sets or {})
    if image_size:
        overrides["image_size"] = image_size
    try:
        model = _task_class(task).from_pretrained(src, **overrides)
    except (CheckpointError, ValueError) as err:
        raise CliError(str(err), prog=prog) from None
    model.save_pretrained(dst, overwrite=overwrite)
    print(f"read {src} ({model.source_format} format, {model.num_parameters():,} parameters) -> wrote {dst}")


def _convert(args: argparse.Namespace) -> int:
    from alicemind.core.cli import parse_value

    sets = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--set takes KEY=VALUE, got {item!r}", prog="alicemind mplug convert")
        sets[key] = parse_value(value)
    prog = "alicemind mplug convert"
    _convert_to(Path(args.src), Path(args.dst), args.task, args.overwrite, prog, args.image_size, sets)
    return 0


def _download(args: argparse.Namespace) -> int:
    prog = "alicemind mplug download"
    entry, path = fetch_released(args.name, offline=args.offline, force=args.force, prog=prog)
    if not args.no_convert and entry.format == "mplug-pth":
        _convert_to(path, Path(args.output) if args.output else path.parent / "alicemind", "vqa", True, prog)
    return 0


def _load_for_inference(folder: str, task: str, prog: str):
    from alicemind.core.tokenization import WordPieceTokenizer
    from alicemind.mplug.processor import MPlugProcessor

    path = Path(folder)
    if not path.is_dir():
        raise CliError(f"--model {path} is not a model folder (config.json, model.safetensors, tokenizer)", prog=prog)
    try:
        model = _task_class(task).from_pretrained(path).eval()
        tokenizer = WordPieceTokenizer.from_pretrained(path)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        raise CliError(str(err), prog=prog) from None
    # --compile: the model compiles its own parts (encoders, fusion, decode steps) and stays itself.
    return maybe_optimize(model), MPlugProcessor(tokenizer, model.config.image_size)


def _images(processor, paths: list[str], prog: str):
    from alicemind.mplug.processor import ImageError

    try:
        return processor.images(paths)
    except ImageError as err:
        raise CliError(str(err), prog=prog) from None


def _caption(args: argparse.Namespace) -> int:
    prog = "alicemind mplug caption"
    model, processor = _load_for_inference(args.model, "caption", prog)
    pixels = _images(processor, args.images, prog)
    ids = model.generate(pixels, num_beams=args.beams, max_new_tokens=args.max_tokens, min_length=args.min_tokens)
    for path, text in zip(args.images, processor.decode(ids), strict=True):
        print(f"{path}\t{text}")
    return 0


def _ask(args: argparse.Namespace) -> int:
    prog = "alicemind mplug ask"
    model, processor = _load_for_inference(args.model, "vqa", prog)
    pixels = _images(processor, [args.image], prog)
    question_ids, question_mask = processor.text([args.question])
    ids = model.generate(pixels, question_ids, question_mask, num_beams=args.beams, max_new_tokens=args.max_tokens)
    print(processor.decode(ids)[0])
    return 0


def _train(args: argparse.Namespace) -> int:
    from alicemind.mplug.runner import run_train

    result = run_train(run_recipe_from_args("mplug", args), progress_bar=not args.no_progress, recipe_name=args.recipe)
    print(f"trained -> {result['model_dir']}")
    if "metrics" in result:
        print(json.dumps({k: v for k, v in result["metrics"].items() if not isinstance(v, list)}, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from alicemind.mplug.runner import run_evaluate

    metrics = run_evaluate(recipe_from_args("mplug", args), recipe_name=args.recipe, overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)}, indent=1))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.mplug.reproduce import reproduce

    text = reproduce(args.table, args.runs or ())
    print(text, end="")
    if args.output:
        out = Path(args.output)
        if out.exists() and not args.overwrite:
            raise CliError(f"{out} exists; pass --overwrite to replace it", prog="alicemind mplug reproduce")
        out.write_text(text, encoding="utf-8")
    return 0


def register(subparsers) -> None:
    """Add ``mplug`` and its verbs to the ``alicemind`` command."""
    from alicemind.mplug import hub as _hub  # noqa: F401  (registers the releases)

    parser = subparsers.add_parser(
        "mplug", help="mPLUG: convert, download, pretrain, finetune, evaluate, caption, ask, reproduce"
    )
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    convert = verbs.add_parser(
        "convert",
        help="convert a released .pth (mplug_base.pth, ...) or our folder into our folder for one task",
        description="Read an mPLUG checkpoint under the chosen task's key rules (the release's remap, CLIP and "
        "BERT names, fusion layer offset, position-table resize) and write config.json + model.safetensors. Every "
        "key is loaded or skipped by a named rule (CLIP's text tower, dead fusion layers, heads the task lacks); "
        "anything else is an error naming it.",
    )
    convert.add_argument("src", help="released .pth file or our folder")
    convert.add_argument("dst", help="output folder")
    convert.add_argument("--task", choices=sorted(TASK_CLASSES), default="vqa", help="task model to build (vqa)")
    convert.add_argument("--image-size", type=int, help="resize the position table to this resolution")
    convert.add_argument("--set", nargs="+", metavar="KEY=VALUE",
                         help="config values the weights cannot tell (e.g. stride_layer=3, num_attention_heads=12)")  # fmt: skip
    convert.add_argument("--overwrite", action="store_true", help="replace DST even if it holds other files")
    convert.set_defaults(func=_convert)

    download = verbs.add_parser(
        "download",
        help="download a released checkpoint (progress bar, resume, checksum) and convert it",
        description="Known: mplug.en.base, mplug.en.large, mplug.en.large.v2, clip.ViT-B-16, clip.ViT-L-14. Files "
        "are cached under $ALICEMIND_CACHE (default ~/.cache/alicemind).",
    )
    add_download_arguments(download)
    download.set_defaults(func=_download)

    for name, func, helptext, example in (
        ("pretrain", _train, "pre-train with ITC (momentum distillation, queues), ITM (hard negatives), MLM and "
         "PrefixLM on image-text pairs in the original's JSON format", "pretrain"),
        ("finetune", _train, "fine-tune: coco-caption, coco-caption-scst (self-critical, CIDEr-D reward), vqa, "
         "retrieval-coco, retrieval-flickr, refcoco", "coco-caption"),
    ):  # fmt: skip
        verb = verbs.add_parser(name, help=helptext, description=helptext + ". Recipes ship in the package; any "
                                "recipe value is overridden with KEY=VALUE.")  # fmt: skip
        add_recipe_arguments(verb, package="mplug", example=example)
        add_run_arguments(verb)
        verb.add_argument("--no-progress", action="store_true", help="no progress bar")
        verb.set_defaults(func=func)
    evaluate = verbs.add_parser(
        "evaluate",
        help="score a model on eval_file: CIDEr/BLEU-4, VQA accuracy, R@1/5/10 both ways, accuracy at IoU 0.5",
        description="Evaluate model=FOLDER on eval_file=FILE.json with a task recipe's settings (beam search for "
        "captions and answers, ITC top-k re-ranked by ITM for retrieval, greedy bin tokens for grounding).",
    )
    add_recipe_arguments(evaluate, package="mplug", example="coco-caption")
    evaluate.add_argument("--overwrite", action="store_true", help="replace output_dir/metrics.json if it exists")
    add_compile_arguments(evaluate)
    evaluate.set_defaults(func=compile_scope(_evaluate))

    reproduce = verbs.add_parser(
        "reproduce",
        help="print the README's model and result tables with our figures beside them",
        description="The README tables (released models; VQA, caption CE and CIDEr-opt, retrieval, RefCOCO/+/g, "
        "SNLI-VE, NLVR2) with an 'ours' column: our parameter count per released size (built on the meta device, "
        "no download) and the metrics of our finetune/evaluate runs found under --runs (their metrics.json, which "
        "names the recipe; a refcoco run's dataset= picks its row by the TransVG names: unc = RefCOCO, unc+ = "
        "RefCOCO+, gref/gref_umd = RefCOCOg). Nothing is trained here.",
    )
    reproduce.add_argument("--table", choices=("models", "results", "all"), default="all", help="which table (all)")
    reproduce.add_argument("--runs", nargs="+", metavar="DIR", help="run folders (or metrics.json files) to read")
    reproduce.add_argument("--output", help="also write the markdown here")
    reproduce.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    reproduce.set_defaults(func=_reproduce)

    caption = verbs.add_parser(
        "caption",
        help="caption images with a caption model folder",
        description="Print 'IMAGE<TAB>caption' per image (beam search, GNMT length penalty 0.6 as released).",
    )
    caption.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any pillow format)")
    caption.add_argument("--model", required=True, help="caption model folder (ours, with its tokenizer)")
    caption.add_argument("--beams", type=int, default=5, help="beam width (5)")
    caption.add_argument("--max-tokens", type=int, default=25, help="most generated tokens (25)")
    caption.add_argument("--min-tokens", type=int, default=0, help="fewest generated tokens before [SEP] (0)")
    add_compile_arguments(caption)
    caption.set_defaults(func=compile_scope(_caption))

    ask = verbs.add_parser(
        "ask",
        help="answer a question about an image with a VQA model folder",
        description="Print the generated answer (beam search over the fused image and question, as released).",
    )
    ask.add_argument("image", help="image file")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--model", required=True, help="VQA model folder (ours, with its tokenizer)")
    ask.add_argument("--beams", type=int, default=5, help="beam width (5)")
    ask.add_argument("--max-tokens", type=int, default=10, help="most generated tokens (10)")
    add_compile_arguments(ask)
    ask.set_defaults(func=compile_scope(_ask))


def main(argv=None) -> int:
    """Run ``alicemind mplug ...`` directly (same as through the ``alicemind`` command)."""
    from alicemind.core.cli import main as core_main

    logging.basicConfig(level=logging.WARNING)
    return core_main(["mplug", *(argv or [])])
