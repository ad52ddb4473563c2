"""``alicemind sdcup ...``: convert, download, build-corpus, pretrain, finetune, evaluate, predict, reproduce."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from alicemind.core.checkpoint import CheckpointError
from alicemind.core.cli import CliError, add_recipe_arguments, add_run_arguments, run_recipe_from_args
from alicemind.core.cli.checkpoints import add_download_arguments, fetch_released
from alicemind.core.cli.compiling import add_compile_arguments, maybe_optimize
from alicemind.core.cli.schema import Rule, register_recipe_rules

MODEL_CLASSES = {"encoder": "SdcupEncoder", "pretraining": "SdcupForPreTraining", "nl2sql": "SdcupForNL2SQL"}
register_recipe_rules("sdcup", {"curriculum.pacing": Rule(str, choices=("linear", "root", "step", "none"))})


def _load(kind: str, src: Path, prog: str):
    import alicemind.sdcup as sdcup

    if not src.exists():
        raise CliError(f"no checkpoint at {src}", prog=prog)
    try:
        return getattr(sdcup, MODEL_CLASSES[kind]).from_pretrained(src)
    except (CheckpointError, ValueError) as err:
        raise CliError(str(err), prog=prog) from None


def _convert_to(src: Path, dst: Path, kind: str, overwrite: bool, hf: str | None, prog: str) -> None:
    from alicemind.core.io import check_replaceable

    check_replaceable(dst, overwrite=overwrite)
    if hf:  # refuse before any work, as for DST
        check_replaceable(Path(hf), overwrite=overwrite)
    model = _load(kind, src, prog)
    model.save_pretrained(dst, overwrite=overwrite)
    print(f"read {src} ({model.source_format} format, {model.num_parameters():,} parameters) -> wrote {dst}")
    if hf:
        from alicemind.sdcup.convert import HF_EXPORT_NOTE, export_huggingface_bert

        encoder = model if kind == "encoder" else model.sdcup
        export_huggingface_bert(encoder, hf, overwrite=overwrite)
        print(f"wrote Hugging Face BERT to {hf}: {HF_EXPORT_NOTE}")


def _convert(args) -> int:
    _convert_to(Path(args.src), Path(args.dst), args.model_class, args.overwrite, args.hf, "alicemind sdcup convert")
    return 0


def _download(args) -> int:
    prog = "alicemind sdcup download"
    _, path = fetch_released(args.name, offline=args.offline, force=args.force, prog=prog)
    if not args.no_convert:
        dst = Path(args.output) if args.output else path.parent / "alicemind"
        _convert_to(path, dst, "encoder", True, None, prog)
    return 0


def _examples(data: str, tables: str, prog: str):
    from alicemind.sdcup.data import read_examples, read_tables

    for path in (data, tables):
        if not Path(path).is_file():
            raise CliError(f"file not found: {path}", prog=prog)
    try:
        return read_examples(data, read_tables(tables))
    except (ValueError, KeyError) as err:
        raise CliError(str(err), prog=prog) from None


def _build_corpus(args) -> int:
    from alicemind.sdcup.pretraining import write_corpus
    from alicemind.sdcup.training import load_tokenizer

    examples = _examples(args.pairs, args.tables, "alicemind sdcup build-corpus")
    if any(ex.sql is None for ex in examples):
        raise CliError("every pair needs its SQL to derive dependency labels", prog="alicemind sdcup build-corpus")
    count = write_corpus(examples, load_tokenizer(args.tokenizer), args.output)
    print(f"wrote {count} pairs with struct_question/struct_label to {args.output}")
    return 0


def _pretrain(args) -> int:
    from alicemind.sdcup.training import run_pretraining

    result = run_pretraining(run_recipe_from_args("sdcup", args), progress_bar=not args.no_progress,
                             overrides=args.overrides)  # fmt: skip
    print(f"pre-trained -> {result.model_dir}")
    for name in sorted(result.final):
        print(f"  {name}: {result.initial.get(name, float('nan')):.4f} -> {result.final[name]:.4f}")
    return 0


def _finetune(args) -> int:
    from alicemind.sdcup.training import run_finetune

    result = run_finetune(run_recipe_from_args("sdcup", args), progress_bar=not args.no_progress,
                          overrides=args.overrides)  # fmt: skip
    print(f"fine-tuned -> {result.model_dir}")
    print(json.dumps(result.final, indent=1))
    return 0


def _evaluate(args) -> int:
    from alicemind.sdcup.evaluate import read_value_names
    from alicemind.sdcup.predicting import evaluate_model
    from alicemind.sdcup.training import load_tokenizer

    prog = "alicemind sdcup evaluate"
    model = maybe_optimize(_load("nl2sql", Path(args.model), prog), args)
    examples = _examples(args.data, args.tables, prog)
    if any(ex.sql is None for ex in examples):
        raise CliError(f"{args.data}: every question needs its gold sql to be evaluated", prog=prog)
    synonyms = read_value_names(args.value_names) if args.value_names else None
    report = evaluate_model(model, load_tokenizer(args.tokenizer or args.model), examples,
                            model.config.max_seq_length, execution_guided=args.eg, synonyms=synonyms,
                            database=args.database)  # fmt: skip
    metrics = report.metrics()
    print(json.dumps(metrics, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps({"metrics": metrics, "details": report.details}, indent=1,
                                                ensure_ascii=False, default=str))  # fmt: skip
    return 0


def _predict(args) -> int:
    from alicemind.sdcup.predicting import predict_one, read_table_csv
    from alicemind.sdcup.table import TableError, TableTooLongError
    from alicemind.sdcup.training import load_tokenizer

    prog = "alicemind sdcup predict"
    if not Path(args.table).is_file():
        raise CliError(f"table CSV not found: {args.table}", prog=prog)
    model = maybe_optimize(_load("nl2sql", Path(args.model), prog), args)
    try:
        table = read_table_csv(args.table)
        result = predict_one(model, load_tokenizer(args.tokenizer or args.model), args.question, table,
                             execution_guided=args.eg)  # fmt: skip
    except (TableError, TableTooLongError, ValueError) as err:
        raise CliError(str(err), prog=prog) from None
    print(result.display)
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(json.dumps({"sql": result.sql, "parameters": result.parameters, "rows": result.rows,
                      "error": result.error}, ensure_ascii=False, default=str))  # fmt: skip
    return 0


def _reproduce(args) -> int:
    from alicemind.sdcup.reproduce import run_reproduce

    print(run_reproduce(args.table, checkpoint=args.checkpoint, data_dir=args.data_dir, name=args.name,
                        output_dir=args.output, overrides=args.overrides, progress_bar=not args.no_progress))  # fmt: skip
    return 0


def register(subparsers) -> None:
    """Add ``sdcup`` and its verbs to the ``alicemind`` command."""
    from alicemind.sdcup import hub as _hub  # noqa: F401  (registers the releases)

    parser = subparsers.add_parser("sdcup", help="SDCUP: table-aware encoder, NL2SQL on SQLite, schema-dependency "
                                   "pre-training")  # fmt: skip
    verbs = parser.add_subparsers(title="verbs", dest="verb", metavar="VERB", required=True)

    convert = verbs.add_parser("convert", help="convert a released UER file (sdcup_*_model.bin-N) to ours",
                               description="Read a UER state dict (bare or pre_encoder.-prefixed; a UER JSON config "
                               "beside it is used) or our folder, and write config.json + model.safetensors. Every "
                               "key is mapped, dropped by a named rule, or an error naming it.")  # fmt: skip
    convert.add_argument("src", help="UER .bin file (or its folder), or our folder")
    convert.add_argument("dst", help="output folder")
    convert.add_argument("--model-class", choices=sorted(MODEL_CLASSES), default="encoder",
                         help="which model to read (pretraining also reads UER's MLM target)")  # fmt: skip
    convert.add_argument("--hf", metavar="FOLDER", help="also write a Hugging Face BertModel folder (close, not "
                         "bit-equal: BERT's LayerNorm is sqrt(var+eps), UER's std+eps)")  # fmt: skip
    convert.add_argument("--overwrite", action="store_true", help="replace DST even if it holds other files")
    convert.set_defaults(func=_convert)

    download = verbs.add_parser("download", help="download a released checkpoint and convert it",
                                description="Known checkpoints: sdcup.ch.base, sdcup.ch.large.")  # fmt: skip
    add_download_arguments(download)
    download.set_defaults(func=_download)

    corpus = verbs.add_parser("build-corpus", help="derive dependency labels from (question, SQL, table) triples",
                              description="Write CBANK-style JSON lines with question_tok, struct_question (the "
                              "schema item each token depends on; the dummy column = no link) and struct_label.")  # fmt: skip
    corpus.add_argument("pairs", help="JSON lines of questions with sql (CBANK or WikiSQL format)")
    corpus.add_argument("tables", help="JSON lines of tables")
    corpus.add_argument("output", help="corpus file to write")
    corpus.add_argument("--tokenizer", required=True, help="vocab.txt or a tokenizer folder")
    corpus.set_defaults(func=_build_corpus)

    for name, func, helptext, example in (
        ("pretrain", _pretrain, "pre-train: schema-dependency prediction + MLM under a schema-aware curriculum",
         "pretrain-demo"),
        ("finetune", _finetune, "fine-tune the SQLova-style NL2SQL head (recipes cbank, wikisql)", "cbank"),
    ):  # fmt: skip
        verb = verbs.add_parser(name, help=helptext, description=helptext + ". Recipes ship in the package; any "
                                "recipe value is overridden with KEY=VALUE.")  # fmt: skip
        add_recipe_arguments(verb, default=None, package="sdcup", example=example)
        add_run_arguments(verb)
        verb.add_argument("--no-progress", action="store_true", help="no progress bar")
        verb.set_defaults(func=func)

    for name, func, helptext in (
        ("evaluate", _evaluate, "predict a JSONL set and score it: logical form, sql_acc, execution on SQLite"),
        ("predict", _predict, "a question and a table CSV in: SQL (bound parameters) and its rows out"),
    ):
        verb = verbs.add_parser(name, help=helptext, description=helptext + ". Tables are loaded into SQLite "
                                "(in memory); queries run read-only with values as bound parameters.")  # fmt: skip
        verb.add_argument("--model", required=True, help="fine-tuned SdcupForNL2SQL folder")
        verb.add_argument("--tokenizer", help="tokenizer folder or vocab.txt (default: the model folder)")
        verb.add_argument("--eg", action="store_true", help="execution-guided decoding")
        if name == "evaluate":
            verb.add_argument("data", help="JSON lines of questions with gold sql")
            verb.add_argument("tables", help="JSON lines of tables")
            verb.add_argument("--value-names", help="synonyms table for sql_acc (cbank_value_name.csv)")
            verb.add_argument("--database", help="load the tables into this SQLite file (default: in memory)")
            verb.add_argument("--output", help="write metrics and per-example details (SQL, rows) to this JSON")
        else:
            verb.add_argument("question", help="the question")
            verb.add_argument("table", help="CSV file with a header row")
        add_compile_arguments(verb)
        verb.set_defaults(func=func)

    reproduce = verbs.add_parser("reproduce", help="fine-tune on CBANK and print the README table beside ours",
                                 description="Fine-tune a checkpoint with the cbank recipe, score the test file and "
                                 "write results.md / results.json (published: SDCUP README).")  # fmt: skip
    reproduce.add_argument("table", help="reproduce recipe, e.g. reproduce-sdcup-readme")
    reproduce.add_argument("--checkpoint", required=True, help="pre-trained checkpoint (released UER file or ours)")
    reproduce.add_argument("--name", default="sdcup.ch.base", help="which published row to compare with")
    reproduce.add_argument("--data-dir", required=True, help="folder with the CBANK files")
    reproduce.add_argument("--output", default="runs/reproduce-sdcup", help="output folder")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bar")
    reproduce.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="applied to the fine-tuning recipe")
    reproduce.set_defaults(func=_reproduce)


def main(argv=None) -> int:
    """Run ``alicemind sdcup ...`` directly (same as through the ``alicemind`` command)."""
    from alicemind.core.cli import main as core_main

    logging.basicConfig(level=logging.WARNING)
    return core_main(["sdcup", *(argv or [])])
