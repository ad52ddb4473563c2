"""``alicemind structbert ...``: convert and download (pre-training and fine-tuning verbs register here too)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import CliError
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released

MODEL_CLASSES = {
    "model": "StructBertModel",
    "pretraining": "StructBertForPreTraining",
    "sequence-classification": "StructBertForSequenceClassification",
    "token-classification": "StructBertForTokenClassification",
    "question-answering": "StructBertForQuestionAnswering",
    "multiple-choice": "StructBertForMultipleChoice",
}

# Extra verbs (pretrain, finetune, ...) are added by modules listed here, each exposing add_parser(subparsers).
VERB_MODULES = ("alicemind.structbert.recipes_cli",)


def _model_class(kind: str):
    import alicemind.structbert as sb

    return getattr(sb, MODEL_CLASSES[kind])


def _convert(args: argparse.Namespace) -> int:
    src, dst = Path(args.src), Path(args.dst)
    if not src.exists():
        raise CliError(f"no checkpoint at {src}")
    config = None
    if args.config:
        if not Path(args.config).is_file():
            raise CliError(f"config file not found: {args.config}")
        config = args.config
    elif args.preset:
        from alicemind.structbert import StructBertConfig

        config = StructBertConfig.from_preset(args.preset)
    kwargs = {"config": config} if config is not None else {}
    try:
        model = _model_class(args.model_class).from_pretrained(src, **kwargs)
    except CheckpointError as err:
        raise CliError(str(err)) from None
    model.save_pretrained(dst)
    if args.vocab:
        from alicemind.structbert.tokenization import StructBertTokenizer

        StructBertTokenizer.from_pretrained(
            Path(args.vocab).parent if Path(args.vocab).is_file() else args.vocab
        ).save_pretrained(dst)
    print(f"read {src} ({model.source_format} format, {model.num_parameters():,} parameters) -> wrote {dst}")
    return 0


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
