"""``alicemind structvbert ...``: convert, download, build-features, pretrain, finetune, evaluate, predict, reproduce."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import CliError, add_recipe_arguments, add_run_arguments, run_recipe_from_args
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released
from alicemind.core.cli.compiling import add_compile_arguments, maybe_optimize
from alicemind.core.cli.schema import Rule, register_recipe_rules

MODEL_CLASSES = {
    "model": "StructVBertModel",
    "pretraining": "StructVBertForPreTraining",
    "vqa": "StructVBertForVQA",
    "nlvr2": "StructVBertForNLVR2",
}
register_recipe_rules("structvbert", {
    "task": Rule(str, choices=("vqa", "gqa", "nlvr2")),
    "optimizer": Rule(str, choices=("bertadam", "adamw")),
})  # fmt: skip


def _model_class(kind: str):
    import alicemind.structvbert as svb

    return getattr(svb, MODEL_CLASSES[kind])


def _load(kind: str, src: Path, prog: str, **overrides):
    if not src.exists():
        raise CliError(f"no checkpoint at {src}", prog=prog)
    try:
        return _model_class(kind).from_pretrained(src, **overrides)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        raise CliError(str(err), prog=prog) from None


def _tokenizer_beside(folder: Path):
    from alicemind.structvbert.tokenization import StructVBertTokenizer

    folder = folder if folder.is_dir() else folder.parent
    try:
        return StructVBertTokenizer.from_folder(folder)
    except FileNotFoundError:
        return None


def _convert_to(src: Path, dst: Path, kind: str, overwrite: bool, prog: str, **overrides) -> None:
    from alicemind.core.io import check_replaceable, save_folder

    check_replaceable(dst, overwrite=overwrite)
    model = _load(kind, src, prog, **overrides)
    tokenizer = _tokenizer_beside(src)
    with save_folder(dst, overwrite=overwrite) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    print(f"read {src} ({model.source_format} format, {model.num_parameters():,} parameters) -> wrote {dst}")


def _convert(args: argparse.Namespace) -> int:
    overrides = {}
    if args.answers:
        from alicemind.structvbert.answers import read_answer_list

        overrides["answers"] = read_answer_list(args.answers)
    if args.answer_table:
        overrides["answer_table"] = args.answer_table
    _convert_to(Path(args.src), Path(args.dst), args.model_class, args.overwrite, "alicemind structvbert convert",
                **overrides)  # fmt: skip
    return 0


def _download(args: argparse.Namespace) -> int:
    prog = "alicemind structvbert download"
    _, path = fetch_released(args.name, offline=args.offline, force=args.force, prog=prog)
    if not args.no_convert:
        src = path / "pretrained_model" if (path / "pretrained_model").is_dir() else path
        _convert_to(src, Path(args.output) if args.output else path.parent / "alicemind", "pretraining", True, prog)
    return 0


def _build_features(args: argparse.Namespace) -> int:
    from alicemind.structvbert.features import RegionFeatureError
    from alicemind.structvbert.regions import RegionFeatures

    try:
        cache = RegionFeatures.build(args.sources, args.cache, rebuild=args.rebuild, progress_bar=not args.no_progress)
    except RegionFeatureError as err:
        raise CliError(str(err)) from None
    print(f"{cache.path}: {len(cache)} images, {cache.feature_dim}-d region features")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from alicemind.structvbert.pretraining import run_pretraining

    result = run_pretraining(run_recipe_from_args("structvbert", args), progress_bar=not args.no_progress)
    for stage in result.stages:
        for name in sorted(stage.final):
            print(f"  {stage.name} {name}: {stage.initial.get(name, float('nan')):.4f} -> {stage.final[name]:.4f}")
    print(f"pre-trained -> {result.model_dir}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from alicemind.structvbert.finetuning import run_finetune

    result = run_finetune(run_recipe_from_args("structvbert", args), progress_bar=not args.no_progress)
    print(f"fine-tuned -> {result.model_dir}")
    print(json.dumps(result.metrics, indent=1))
    return 0


def _features_from(args) -> dict:
    return {"feature_cache": args.feature_cache, "features": args.features or [], "data_dir": args.data_dir}


def _evaluate(args: argparse.Namespace) -> int:
    from alicemind.structvbert import finetuning as ft

    prog = "alicemind structvbert evaluate"
    kind = "nlvr2" if args.task == "nlvr2" else "vqa"
    model = _load(kind, Path(args.model), prog)
    recipe = {**_features_from(args), "model": args.model, "max_objects": args.max_objects}
    features = ft.open_features(recipe, progress_bar=False)
    files = [Path(args.data_dir) / f"{args.split}.json"]
    examples, encoded, collate = ft.prepare(recipe, model, ft.load_tokenizer(recipe), features, files, args.task)
    # Text and regions are padded to fixed sizes (max_length, max_objects), so --compile builds one graph.
    loader = ft.make_loader(encoded, collate, args.batch_size)
    metrics = ft.evaluate(maybe_optimize(model, args), args.task, examples, loader)
    text = json.dumps({"task": args.task, "split": args.split, "examples": len(examples), "metrics": metrics}, indent=1)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from alicemind.structvbert import finetuning as ft

    prog = "alicemind structvbert predict"
    model = _load("vqa", Path(args.model), prog)
    recipe = {**_features_from(args), "model": args.model}
    if args.input:
        questions = json.loads(Path(args.input).read_text(encoding="utf-8"))
    elif args.image_id and args.question:
        questions = [{"img_id": args.image_id, "sent": args.question}]
    else:
        raise CliError("give --input questions.json, or --image-id and --question", prog=prog)
    rows = ft.predict_answers(maybe_optimize(model, args), ft.load_tokenizer(recipe), ft.open_features(recipe, progress_bar=False),
                              questions, top_k=args.top_k)  # fmt: skip
    lines = "\n".join(json.dumps(r) for r in rows)
    if args.output:
        Path(args.output).write_text(lines + "\n")
    print(lines)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.structvbert.reproduce import run_reproduce

    print(run_reproduce(args.table, checkpoint=args.checkpoint, data_dir=args.data_dir, output_dir=args.output,
                        overrides=args.overrides, progress_bar=not args.no_progress))  # fmt: skip
    return 0


def _feature_arguments(parser) -> None:
    parser.add_argument("--feature-cache", required=True, help="region feature cache folder (built once)")
    parser.add_argument("--features", nargs="*", help="TSV files, NPZ folders or HDF5 files to build the cache from")


def register(subparsers) -> None:
    """Add ``structvbert`` and its verbs to the ``alicemind`` command."""
    from alicemind.structvbert import hub as _hub  # noqa: F401  (registers the release)

    parser = subparsers.add_parser("structvbert", help="StructVBERT: vision-language BERT over region features")
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    convert = verbs.add_parser("convert", help="convert the released pretrained_model/ or a BEST.pth to ours",
                               description="Read a StructVBERT checkpoint (the released pretrained_model/ folder, a "
                               "fine-tuned BEST.pth of the original scripts, or ours) and write config.json + "
                               "model.safetensors (+ the tokenizer when vocab.txt is beside it). Every key is mapped "
                               "or an error naming it.")  # fmt: skip
    convert.add_argument("src", help="release folder, .pth file, or our folder")
    convert.add_argument("dst", help="output folder")
    convert.add_argument("--model-class", choices=sorted(MODEL_CLASSES), default="pretraining",
                         help="which model (and heads) to read (default: pretraining, every head)")  # fmt: skip
    convert.add_argument("--answers", help="VQA: trainval_label2ans.json (the answer vocabulary of the new head)")
    convert.add_argument("--answer-table", help="VQA from the pre-trained file: all_ans.json, to remap its answer head")
    convert.add_argument("--overwrite", action="store_true", help="replace DST even if it holds other files")
    convert.set_defaults(func=_convert)

    download = verbs.add_parser("download", help="download the released checkpoint and convert it",
                                description="Known checkpoints: structvbert.en.base. Files are cached under "
                                "$ALICEMIND_CACHE (default ~/.cache/alicemind).")  # fmt: skip
    add_download_arguments(download)
    download.set_defaults(func=_download)

    build = verbs.add_parser("build-features", help="read TSV / NPZ / HDF5 region features into a cache",
                             description="Read bottom-up-attention features (LXMERT TSV with base64 fields, a folder "
                             "of <img_id>.npz, or the original's HDF5) into a memory-mapped cache folder. A bad row "
                             "is one error naming file, row and field; nothing half-written is left.")  # fmt: skip
    build.add_argument("cache", help="cache folder to write")
    build.add_argument("sources", nargs="+", help="TSV files, NPZ folders or .h5 files")
    build.add_argument("--rebuild", action="store_true", help="rebuild even if the cache exists")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=_build_features)

    for name, func, helptext, example in (
        ("pretrain", _pretrain, "progressive multi-stage pre-training (stages as recipe data)", "pretrain-progressive"),
        ("finetune", _finetune, "fine-tune on VQA, GQA or NLVR2", "vqa"),
    ):
        verb = verbs.add_parser(name, help=helptext, description=helptext + ". Recipes ship in the package; any "
                                "recipe value is overridden with KEY=VALUE.")  # fmt: skip
        add_recipe_arguments(verb, default=None, package="structvbert", example=example)
        add_run_arguments(verb)
        verb.add_argument("--no-progress", action="store_true", help="no progress bar")
        verb.set_defaults(func=func)

    evaluate = verbs.add_parser("evaluate", help="score a fine-tuned model: VQA soft accuracy, GQA/NLVR2 accuracy")
    evaluate.add_argument("--model", required=True, help="fine-tuned folder")
    evaluate.add_argument("--task", required=True, choices=("vqa", "gqa", "nlvr2"))
    evaluate.add_argument("--data-dir", required=True, help="folder holding <split>.json")
    evaluate.add_argument("--split", default="valid", help="split file name without .json (valid)")
    evaluate.add_argument("--max-objects", type=int, default=None, help="region cap (default: the model's)")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", help="write the metrics JSON here")
    _feature_arguments(evaluate)
    add_compile_arguments(evaluate)
    evaluate.set_defaults(func=_evaluate)

    predict = verbs.add_parser("predict", help="image features + a question in, top answers out")
    predict.add_argument("--model", required=True, help="fine-tuned VQA/GQA folder")
    predict.add_argument("--image-id", help="image id in the feature cache")
    predict.add_argument("--question", help="the question")
    predict.add_argument("--input", help='JSON list of {"img_id", "sent"} questions instead')
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--output", help="write JSON lines here")
    predict.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    _feature_arguments(predict)
    add_compile_arguments(predict)
    predict.set_defaults(func=_predict)

    reproduce = verbs.add_parser("reproduce", help="fine-tune and score every task of the README table",
                                 description="Run the fine-tuning recipes a reproduce-* recipe lists and print ours "
                                 "beside the published numbers.")  # fmt: skip
    reproduce.add_argument("table", help="reproduce recipe, e.g. reproduce-structvbert-readme")
    reproduce.add_argument("--checkpoint", required=True, help="pre-trained folder (released or ours)")
    reproduce.add_argument("--data-dir", required=True, help="folder with one sub-folder per task (vqa/, nlvr2/)")
    reproduce.add_argument("--output", default="runs/reproduce", help="output folder (runs/reproduce)")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bar")
    reproduce.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="applied to every task's recipe")
    reproduce.set_defaults(func=_reproduce)


def main(argv=None) -> int:
    """Run ``alicemind structvbert ...`` directly (same as through the ``alicemind`` command)."""
    from alicemind.core.cli import main as core_main

    logging.basicConfig(level=logging.WARNING)
    return core_main(["structvbert", *(argv or [])])
