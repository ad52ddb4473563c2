"""``alicemind latticebert ...``: convert, download, build-lexicon, pretrain, finetune, reproduce."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import CliError, add_recipe_arguments, add_run_arguments, run_recipe_from_args
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released
from alicemind.core.cli.schema import Rule, register_recipe_rules

MODEL_CLASSES = {
    "model": "LatticeBertModel",
    "pretraining": "LatticeBertForPreTraining",
    "sequence-classification": "LatticeBertForSequenceClassification",
    "token-classification": "LatticeBertForTokenClassification",
}
register_recipe_rules("latticebert", {"kind": Rule(str, choices=("classify", "ner"))})


def _model_class(kind: str):
    import alicemind.latticebert as lb

    return getattr(lb, MODEL_CLASSES[kind])


def _tokenizer_beside(folder: Path):
    from alicemind.latticebert.tokenization import LatticeBertTokenizer

    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())) if folder.is_dir() else ():
        if (candidate / "vocab.txt").is_file():
            return LatticeBertTokenizer.from_pretrained(candidate)
    return None


def _convert_to(src: Path, dst: Path, kind: str, overwrite: bool, prog: str) -> None:
    from alicemind.core.io import check_replaceable, save_folder

    if not src.exists():
        raise CliError(f"no checkpoint at {src}", prog=prog)
    check_replaceable(dst, overwrite=overwrite)
    try:
        model = _model_class(kind).from_pretrained(src)
        tokenizer = _tokenizer_beside(src)
    except (CheckpointError, ValueError) as err:
        raise CliError(str(err), prog=prog) from None
    with save_folder(dst, overwrite=overwrite) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    print(f"read {src} ({model.source_format} format, {model.num_parameters():,} parameters) -> wrote {dst}")


def _convert(args: argparse.Namespace) -> int:
    _convert_to(Path(args.src), Path(args.dst), args.model_class, args.overwrite, "alicemind latticebert convert")
    return 0


def _download(args: argparse.Namespace) -> int:
    prog = "alicemind latticebert download"
    _, path = fetch_released(args.name, offline=args.offline, force=args.force, prog=prog)
    if not args.no_convert:
        _convert_to(path, Path(args.output) if args.output else path.parent / "alicemind", "model", True, prog)
    return 0


def _build_lexicon(args: argparse.Namespace) -> int:
    from alicemind.latticebert.tokenization import build_lexicon

    corpus = Path(args.corpus)
    if not corpus.is_file():
        raise CliError(f"corpus file not found: {corpus}")
    exclude = set()
    if args.vocab:
        from alicemind.core.tokenization.wordpiece import read_vocab_txt

        exclude = set(read_vocab_txt(args.vocab))
    with corpus.open(encoding="utf-8") as lines:
        n = build_lexicon(lines, args.output, min_count=args.min_count, max_words=args.max_words, exclude=exclude)
    print(f"wrote {n} words to {args.output}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from alicemind.latticebert.pretraining import run_pretraining

    recipe = run_recipe_from_args("latticebert", args)
    result = run_pretraining(recipe, progress_bar=not args.no_progress, overrides=args.overrides)
    print(f"pre-trained on {result.num_instances} instances -> {result.model_dir}")
    for name in sorted(result.final):
        print(f"  eval {name}: {result.initial.get(name, float('nan')):.4f} -> {result.final[name]:.4f}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from alicemind.latticebert.finetuning import run_finetune

    result = run_finetune(run_recipe_from_args("latticebert", args), progress_bar=not args.no_progress)
    print(f"fine-tuned -> {result.model_dir}")
    print(json.dumps(result.metrics, indent=1))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from alicemind.latticebert.reproduce import run_reproduce

    report = run_reproduce(args.table, checkpoint=args.checkpoint, data_dir=args.data_dir, seeds=args.seeds,
                           output_dir=args.output, overrides=args.overrides, progress_bar=not args.no_progress)  # fmt: skip
    print(report)
    return 0


def register(subparsers) -> None:
    """Add ``latticebert`` and its verbs to the ``alicemind`` command."""
    from alicemind.latticebert import hub as _hub  # noqa: F401  (registers the releases)

    parser = subparsers.add_parser(
        "latticebert", help="LatticeBERT: convert, download, build-lexicon, pretrain, finetune, reproduce"
    )
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    convert = verbs.add_parser(
        "convert",
        help="convert a released TF1 folder (model.ckpt.* + labert_config.json) to ours",
        description="Read a LatticeBERT checkpoint (a released TF1 tarball folder, or ours) and write config.json + "
        "model.safetensors, with vocab.txt and lexicon.txt when the folder has them. Every TF variable is mapped, "
        "skipped by a named rule (optimizer slots, counters, port-script copies) or an error naming it.",
    )
    convert.add_argument("src", help="released folder (or the model.ckpt prefix), or our folder")
    convert.add_argument("dst", help="output folder")
    convert.add_argument("--model-class", choices=sorted(MODEL_CLASSES), default="model",
                         help="which model (and heads) to read (default: the encoder)")  # fmt: skip
    convert.add_argument("--overwrite", action="store_true", help="replace DST even if it holds other files")
    convert.set_defaults(func=_convert)

    download = verbs.add_parser(
        "download",
        help="download a released checkpoint (progress bar, resume, checksum) and convert it",
        description="Known checkpoints: latticebert.tiny, latticebert.lite, latticebert.base. Files are cached "
        "under $ALICEMIND_CACHE (default ~/.cache/alicemind).",
    )
    add_download_arguments(download)
    download.set_defaults(func=_download)

    lexicon = verbs.add_parser(
        "build-lexicon",
        help="segment your own corpus with jieba into a plain lexicon (one word a line)",
        description="Count jieba words (2+ characters) of a UTF-8 corpus and write the frequent ones, most "
        "frequent first, as lexicon.txt for LatticeBertTokenizer. Words equal to a --vocab token are left out "
        "(they would collide with that character token's id).",
    )
    lexicon.add_argument("corpus", help="text file, one sentence or document a line")
    lexicon.add_argument("output", help="lexicon file to write")
    lexicon.add_argument("--min-count", type=int, default=2, help="keep words seen at least this often (2)")
    lexicon.add_argument("--max-words", type=int, default=None, help="keep at most this many words")
    lexicon.add_argument("--vocab", help="the character vocab.txt, whose tokens are excluded")
    lexicon.set_defaults(func=_build_lexicon)

    for name, func, helptext, default, example in (
        ("pretrain", _pretrain, "pre-train with masked segment prediction and the 3-way sentence relation",
         None, "pretrain-demo"),
        ("finetune", _finetune, "fine-tune on a CLUE task or an NER corpus (CRF)", None, "clue-afqmc"),
    ):  # fmt: skip
        verb = verbs.add_parser(name, help=helptext, description=helptext + ". Recipes ship in the package; any "
                                "recipe value is overridden with KEY=VALUE.")  # fmt: skip
        add_recipe_arguments(verb, default=default, package="latticebert", example=example)
        add_run_arguments(verb)
        verb.add_argument("--no-progress", action="store_true", help="no progress bar")
        verb.set_defaults(func=func)

    reproduce = verbs.add_parser(
        "reproduce",
        help="fine-tune a checkpoint on every task of a results table over seeds and print it beside the paper",
        description="Run the fine-tuning recipes a reproduce-* recipe lists and write a markdown table (ours: mean "
        "and std over seeds; published values from the original README).",
    )
    reproduce.add_argument("table", help="reproduce recipe, e.g. reproduce-latticebert-readme")
    reproduce.add_argument("--checkpoint", required=True, help="pre-trained folder (released or ours)")
    reproduce.add_argument("--data-dir", required=True, help="folder holding one sub-folder per task (afqmc/...)")
    reproduce.add_argument("--seeds", type=int, default=1, help="seeds per task (1)")
    reproduce.add_argument("--output", default="runs/reproduce", help="output folder (runs/reproduce)")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bar")
    reproduce.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="applied to every task's recipe")
    reproduce.set_defaults(func=_reproduce)


def main(argv=None) -> int:
    """Run ``alicemind latticebert ...`` directly (same as through the ``alicemind`` command)."""
    from alicemind.core.cli import main as core_main

    logging.basicConfig(level=logging.WARNING)
    return core_main(["latticebert", *(argv or [])])
