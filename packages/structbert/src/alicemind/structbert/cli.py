"""``alicemind structbert ...``: convert and download (pre-training and fine-tuning verbs register here too)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import CliError
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released
from alicemind.core.cli.schema import Rule, register_recipe_rules

MODEL_CLASSES = {
    "model": "StructBertModel",
    "pretraining": "StructBertForPreTraining",
    "sequence-classification": "StructBertForSequenceClassification",
    "token-classification": "StructBertForTokenClassification",
    "question-answering": "StructBertForQuestionAnswering",
    "multiple-choice": "StructBertForMultipleChoice",
}

# Closed sets of StructBERT recipe values (types and ranges of the rest come from core's generic rules).
register_recipe_rules("structbert", {"data.whole_word_mask": Rule(str, choices=(None, "wordpiece", "jieba"))})

# Extra verbs (pretrain, finetune, ...) are added by modules listed here, each exposing add_parser(subparsers).
VERB_MODULES = ("alicemind.structbert.recipes_cli",)


def _model_class(kind: str):
    import alicemind.structbert as sb

    return getattr(sb, MODEL_CLASSES[kind])


def _convert(args: argparse.Namespace) -> int:
    from alicemind.core.config import read_json_file
    from alicemind.core.io import check_replaceable, save_folder
    from alicemind.structbert import StructBertConfig

    prog = "alicemind structbert convert"
    src, dst = Path(args.src), Path(args.dst)
    # Every input is checked before the (slow) weights are read, and nothing is written until all succeeded.
    if not src.exists():
        raise CliError(f"no checkpoint at {src}", prog=prog)
    if src.is_dir() and (src / "config.json").is_file():
        read_json_file(src / "config.json")  # not JSON: one line naming the file and the position
    config = None
    if args.config:
        if not Path(args.config).is_file():
            raise CliError(f"config file not found: {args.config}", prog=prog)
        config = StructBertConfig.from_json_file(args.config)
    elif args.preset:
        config = StructBertConfig.from_preset(args.preset)
    tokenizer = _vocab_tokenizer(args.vocab, prog) if args.vocab else None
    check_replaceable(dst, overwrite=args.overwrite)
    kwargs = {"config": config} if config is not None else {}
    try:
        model = _model_class(args.model_class).from_pretrained(src, **kwargs)
    except CheckpointError as err:
        raise CliError(str(err), prog=prog) from None
    # One save: the weights and the tokenizer appear together, and no file of an old folder survives.
    with save_folder(dst, overwrite=args.overwrite) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    print(f"read {src} ({model.source_format} format, {model.num_parameters():,} parameters) -> wrote {dst}")
    return 0


def _vocab_tokenizer(vocab: str, prog: str):
    """The tokenizer of ``--vocab`` (a vocab.txt or a tokenizer folder), or a one-line error."""
    from alicemind.structbert.tokenization import StructBertTokenizer

    path = Path(vocab)
    if path.is_file():
        # Beside a tokenizer_config.json, the folder's settings (casing, specials) apply to the vocab too.
        if (path.parent / "tokenizer_config.json").is_file():
            return StructBertTokenizer.from_pretrained(path.parent)
        return StructBertTokenizer.from_vocab_file(path)
    if path.is_dir() and ((path / "vocab.txt").is_file() or (path / "tokenizer.json").is_file()):
        return StructBertTokenizer.from_pretrained(path)
    raise CliError(f"--vocab {vocab}: expected a vocab.txt file or a folder holding vocab.txt", prog=prog)


def _download(args: argparse.Namespace) -> int:
    from alicemind.structbert import StructBertConfig

    entry, path = fetch_released(
        args.name, offline=args.offline, force=args.force, prog="alicemind structbert download"
    )
    if args.no_convert:
        return 0
    out = Path(args.output) if args.output else path.parent / "alicemind"
    preset = (entry.config or {}).get("preset")
    kwargs = {"config": StructBertConfig.from_preset(preset)} if preset else {}
    try:
        model = _model_class("model").from_pretrained(path, **kwargs)
    except CheckpointError as err:
        raise CliError(f"downloaded {path} but could not read it: {err}") from None
    model.save_pretrained(out)
    print(f"converted ({model.source_format}) -> {out}")
    return 0


def register(subparsers) -> None:
    """Add ``structbert`` and its verbs to the ``alicemind`` command."""
    from alicemind.structbert import hub as _hub  # noqa: F401  (registers the releases)

    parser = subparsers.add_parser("structbert", help="StructBERT: convert, download, pre-train, fine-tune")
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    convert = verbs.add_parser(
        "convert",
        help="convert any released StructBERT layout (en_model/ch_model, sofa, Hugging Face) to ours",
        description="Read a StructBERT checkpoint in any released layout and write config.json + model.safetensors "
        "(Hugging Face BERT key names, loadable by transformers.BertModel).",
    )
    convert.add_argument("src", help="checkpoint file (en_model, ch_model) or folder")
    convert.add_argument("dst", help="output folder")
    convert.add_argument("--config", help="config JSON for files that carry none (e.g. large_bert_config.json)")
    convert.add_argument("--preset", help="or a registered preset, e.g. structbert.en.large")
    convert.add_argument(
        "--model-class",
        choices=sorted(MODEL_CLASSES),
        default="model",
        help="which model (and so which heads) to read (default: the encoder alone)",
    )
    convert.add_argument("--vocab", help="vocab.txt (or its folder) to save beside the weights")
    convert.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DST even if it holds files a model save does not write (a model folder is always replaced)",
    )
    convert.set_defaults(func=_convert)

    download = verbs.add_parser(
        "download",
        help="download a released checkpoint (progress bar, resume, checksum) and convert it",
        description="Known checkpoints: structbert.en.large, structbert.ch.large, sofa.structbert.en.large, "
        "sofa.structbert.ch.large. Files are cached under $ALICEMIND_CACHE (default ~/.cache/alicemind).",
    )
    add_download_arguments(download)
    download.set_defaults(func=_download)

    for module in VERB_MODULES:
        try:
            mod = __import__(module, fromlist=["add_parser"])
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        mod.add_parser(verbs)


def main(argv=None) -> int:
    """Run ``alicemind structbert ...`` directly (same as through the ``alicemind`` command)."""
    from alicemind.core.cli import main as core_main

    logging.basicConfig(level=logging.WARNING)
    return core_main(["structbert", *(argv or [])])
