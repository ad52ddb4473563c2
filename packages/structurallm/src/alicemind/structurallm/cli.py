"""``alicemind structurallm ...``: convert, download, pretrain, finetune, evaluate, predict, reproduce."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import CliError, add_recipe_arguments, add_run_arguments, run_recipe_from_args
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released
from alicemind.core.cli.compiling import add_compile_arguments, compile_scope
from alicemind.core.cli.schema import Rule, register_recipe_rules

MODEL_CLASSES = {
    "model": "StructuralLMModel",
    "pretraining": "StructuralLMForPreTraining",
    "token-classification": "StructuralLMForTokenClassification",
    "question-answering": "StructuralLMForQuestionAnswering",
    "sequence-classification": "StructuralLMForSequenceClassification",
}
TASK_OF_CLASS = {"StructuralLMForTokenClassification": "funsd", "StructuralLMForQuestionAnswering": "docvqa",
                 "StructuralLMForSequenceClassification": "rvl-cdip"}  # fmt: skip
register_recipe_rules("structurallm", {"kind": Rule(str, choices=("funsd", "docvqa", "rvl-cdip"))})


def _model_class(kind: str):
    import alicemind.structurallm as slm

    return getattr(slm, MODEL_CLASSES[kind])


def _tokenizer_beside(folder: Path):
    from alicemind.structurallm.tokenization import StructuralLMTokenizer

    candidates = [folder, folder.parent / "tokenizer_model"] if folder.is_dir() else []
    for candidate in candidates:
        if (candidate / "vocab.json").is_file() or (candidate / "tokenizer_config.json").is_file():
            return StructuralLMTokenizer.from_pretrained(candidate)
    return None


def _convert_to(src: Path, dst: Path, kind: str, overwrite: bool, prog: str) -> None:
    from alicemind.core.io import check_replaceable, save_folder

    if not src.exists():
        raise CliError(f"no checkpoint at {src}", prog=prog)
    check_replaceable(dst, overwrite=overwrite)
    try:
        model = _model_class(kind).from_pretrained(src)
        tokenizer = _tokenizer_beside(src)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        raise CliError(str(err), prog=prog) from None
    with save_folder(dst, overwrite=overwrite) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    print(f"read {src} ({model.source_format} format, {model.num_parameters():,} parameters) -> wrote {dst}")


def _convert(args: argparse.Namespace) -> int:
    _convert_to(Path(args.src), Path(args.dst), args.model_class, args.overwrite, "alicemind structurallm convert")
    return 0


def _download(args: argparse.Namespace) -> int:
    prog = "alicemind structurallm download"
    _, path = fetch_released(args.name, offline=args.offline, force=args.force, prog=prog)
    if not args.no_convert:
        _convert_to(path, Path(args.output) if args.output else path.parent / "alicemind", "model", True, prog)
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from alicemind.structurallm.pretraining import run_pretraining

    recipe = run_recipe_from_args("structurallm", args)
    result = run_pretraining(recipe, progress_bar=not args.no_progress, overrides=args.overrides)
    print(f"pre-trained on {result.num_instances} instances -> {result.model_dir}")
    for name in sorted(result.final):
        print(f"  eval {name}: {result.initial.get(name, float('nan')):.4f} -> {result.final[name]:.4f}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from alicemind.structurallm.finetuning import run_finetune

    result = run_finetune(run_recipe_from_args("structurallm", args), progress_bar=not args.no_progress)
    print(f"fine-tuned -> {result.model_dir}")
    print(json.dumps(result.metrics, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from alicemind.core.cli import recipe_from_args
    from alicemind.structurallm.finetuning import run_evaluate

    if not Path(args.model).is_dir():
        raise CliError(f"no model folder at {args.model}")
    print(json.dumps(run_evaluate(recipe_from_args("structurallm", args), args.model, args.split), indent=1))
    return 0


def _task_of(model_dir: Path) -> str:
    from alicemind.core.checkpoint import read_safetensors_metadata
    from alicemind.core.modeling import WEIGHTS_NAME

    if not (model_dir / WEIGHTS_NAME).is_file():
        raise CliError(f"{model_dir}: not a fine-tuned model folder (no {WEIGHTS_NAME})")
    name = read_safetensors_metadata(model_dir / WEIGHTS_NAME).get("model_class", "")
    if name not in TASK_OF_CLASS:
        raise CliError(f"{model_dir} holds a {name or 'model'} without a task head; fine-tune it first")
    return TASK_OF_CLASS[name]


def _predict(args: argparse.Namespace) -> int:
    from alicemind.structurallm.documents import DocumentError, read_documents
    from alicemind.structurallm.finetuning import load_finetuned
    from alicemind.structurallm.tasks import entities_of, predict

    model_dir = Path(args.model)
    task = _task_of(model_dir)
    try:
        docs = read_documents(args.document, clamp=args.clamp, **({"page_size": args.page_size} if args.page_size
                                                                   and args.document.endswith(".json") else {}))  # fmt: skip
    except DocumentError as err:
        raise CliError(str(err)) from None
    stride = args.doc_stride if args.doc_stride is not None else min(128, args.max_seq_length // 4)
    try:
        model, encoder, id2label = load_finetuned(task, model_dir, {"max_seq_length": args.max_seq_length,
                                                                    "doc_stride": stride})  # fmt: skip
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from None
    for doc in docs:
        if task == "docvqa":
            doc.extra["question"] = args.question or doc.extra.get("question")
            if not doc.extra["question"]:
                raise CliError(f"document {doc.id!r}: give --question (or a 'question' field) for a QA model")
        result = predict(task, model, encoder, doc, id2label)
        if task == "funsd":
            out = {"id": doc.id, "entities": entities_of(doc.words, result),
                   "words": [{"text": w, "label": t} for w, t in zip(doc.words, result)]}  # fmt: skip
        elif task == "docvqa":
            out = {"id": doc.id, "question": doc.extra["question"], "answer": result}
        else:
            out = {"id": doc.id, "label": result}
        print(json.dumps(out, ensure_ascii=False))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.structurallm.reproduce import run_reproduce

    print(run_reproduce(args.table, checkpoint=args.checkpoint, data_dir=args.data_dir, seeds=args.seeds,
                        output_dir=args.output, overrides=args.overrides, progress_bar=not args.no_progress,
                        only=args.tasks or ()))  # fmt: skip
    return 0


def register(subparsers) -> None:
    """Add ``structurallm`` and its verbs to the ``alicemind`` command."""
    from alicemind.structurallm import hub as _hub  # noqa: F401  (registers the release)

    parser = subparsers.add_parser(
        "structurallm", help="StructuralLM: convert, download, pretrain, finetune, evaluate, predict, reproduce"
    )
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    convert = verbs.add_parser(
        "convert",
        help="convert the released TF1 checkpoint (structural_lm_models/model.ckpt-160000) to ours",
        description="Read a StructuralLM checkpoint (the released TF1 folder or a model.ckpt-N prefix, or ours) and "
        "write config.json + model.safetensors (with the tokenizer when the folder has vocab.json + merges.txt). "
        "Every TF variable is mapped, skipped by a named rule (optimizer slots, counters, the unused token-type "
        "table) or an error naming it.",
    )
    convert.add_argument("src", help="released folder (or the model.ckpt-N prefix), or our folder")
    convert.add_argument("dst", help="output folder")
    convert.add_argument("--model-class", choices=sorted(MODEL_CLASSES), default="model",
                         help="which model (and heads) to read (default: the encoder)")  # fmt: skip
    convert.add_argument("--overwrite", action="store_true", help="replace DST even if it holds other files")
    convert.set_defaults(func=_convert)

    download = verbs.add_parser(
        "download",
        help="download the released checkpoint (progress bar, resume, checksum) and convert it",
        description="Known checkpoints: structurallm.en.large. Files are cached under $ALICEMIND_CACHE "
        "(default ~/.cache/alicemind). The tokenizer is RoBERTa-large's (vocab.json + merges.txt), not in the tarball.",
    )
    add_download_arguments(download)
    download.set_defaults(func=_download)

    for name, func, helptext, example in (
        ("pretrain", _pretrain, "pre-train with masked visual-language modelling + cell position classification "
         "on a JSONL of {words, boxes, cells, page_size} pages", "pretrain-demo"),
        ("finetune", _finetune, "fine-tune on FUNSD (entity labelling), DocVQA (extractive QA, ANLS) or RVL-CDIP "
         "(document classes)", "funsd"),
    ):  # fmt: skip
        verb = verbs.add_parser(name, help=helptext, description=helptext + ". Recipes ship in the package; any "
                                "recipe value is overridden with KEY=VALUE.")  # fmt: skip
        add_recipe_arguments(verb, default=None, package="structurallm", example=example)
        add_run_arguments(verb)
        verb.add_argument("--no-progress", action="store_true", help="no progress bar")
        verb.set_defaults(func=func)

    evaluate = verbs.add_parser("evaluate", help="score a fine-tuned model on a split (entity F1 / ANLS / accuracy)",
                                description="Score a fine-tuned folder on data_dir's split with the recipe's metric.")  # fmt: skip
    add_recipe_arguments(evaluate, default=None, package="structurallm", example="funsd")
    evaluate.add_argument("--model", required=True, help="fine-tuned folder (output_dir/model)")
    evaluate.add_argument("--split", default="test", help="split to score (test)")
    add_compile_arguments(evaluate)
    evaluate.set_defaults(func=compile_scope(_evaluate))

    predict = verbs.add_parser(
        "predict",
        help="a document in (FUNSD JSON or JSONL), labelled entities / an answer / a class out, as JSON lines",
        description="Run a fine-tuned folder on documents: a FUNSD annotation (.json), a folder of them, or the "
        "JSONL of {words, boxes, cells, page_size}. The task follows the model's head. Prints one JSON per document.",
    )
    predict.add_argument("document", help="FUNSD .json, a folder of them, or a .jsonl")
    predict.add_argument("--model", required=True, help="fine-tuned folder")
    predict.add_argument("--question", help="the question, for a DocVQA model (else each row's 'question')")
    predict.add_argument("--page-size", type=float, nargs=2, metavar=("W", "H"),
                         help="page size for a FUNSD .json without its page image beside it")  # fmt: skip
    predict.add_argument("--clamp", action="store_true", help="clip boxes that overshoot the page instead of failing")
    predict.add_argument("--max-seq-length", type=int, default=512, help="window length in tokens (512)")
    predict.add_argument("--doc-stride", type=int, default=None,
                         help="tokens shared by neighbouring windows (default: 128, at most a quarter window)")  # fmt: skip
    add_compile_arguments(predict)
    predict.set_defaults(func=compile_scope(_predict))

    reproduce = verbs.add_parser(
        "reproduce",
        help="fine-tune a checkpoint on the paper's three tasks and print ours beside the published numbers",
        description="Run the fine-tuning recipes a reproduce-* recipe lists (data_dir/<task>/ each) and write a "
        "markdown table: ours (mean ± std over seeds), the paper's number, and the released-weights figure users "
        "report for DocVQA.",
    )
    reproduce.add_argument("table", help="reproduce recipe, e.g. reproduce-structurallm-paper")
    reproduce.add_argument("--checkpoint", required=True, help="pre-trained folder (released or ours)")
    reproduce.add_argument("--data-dir", required=True, help="folder holding funsd/, docvqa/, rvl-cdip/")
    reproduce.add_argument("--tasks", nargs="+", help="only these tasks of the table")
    reproduce.add_argument("--seeds", type=int, default=1, help="seeds per task (1)")
    reproduce.add_argument("--output", default="runs/reproduce", help="output folder (runs/reproduce)")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bar")
    reproduce.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="applied to every task's recipe")
    reproduce.set_defaults(func=_reproduce)


def main(argv=None) -> int:
    """Run ``alicemind structurallm ...`` directly (same as through the ``alicemind`` command)."""
    from alicemind.core.cli import main as core_main

    logging.basicConfig(level=logging.WARNING)
    return core_main(["structurallm", *(argv or [])])
