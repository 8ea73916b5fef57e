"""Options and helpers shared by subcommands."""
from __future__ import annotations

import argparse
from pathlib import Path

from tagger.artifacts import ArtifactError, LoadedModel, load_model
from tagger.cli import CLIError
from tagger.paths import default_model_root


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", type=Path, default=None,
        help="model version folder, or a model folder (newest version is used); "
        "default: models/arabic-news-topics (env TAGGER_MODELS_DIR moves models/)",
    )


def load(args: argparse.Namespace) -> LoadedModel:
    path = args.model or default_model_root()
    try:
        return load_model(path)
    except ArtifactError as e:
        raise CLIError(str(e)) from e


def add_labels_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--labels", action="append", default=None, metavar="PATH",
        help="label file: JSONL of {\"id\", \"topics\"} giving corpus articles their full labels by id; repeatable; "
        "'none' for no label files (default: training/labels/*.jsonl, the annotations of the default corpus, "
        "when --corpus is left at its default; none for another corpus)",
    )


def label_files(args: argparse.Namespace, default_corpus: Path) -> list[Path]:
    """The label files to train with: as given, or the shipped annotations when training on the corpus
    they annotate (their ids name its articles; another corpus would not have them)."""
    from tagger.training.assemble import default_label_files

    if args.labels is None:
        return default_label_files() if Path(args.corpus).resolve() == Path(default_corpus).resolve() else []
    if any(str(p).lower() == "none" for p in args.labels):
        if len(args.labels) > 1:
            raise CLIError("--labels none cannot be combined with label files")
        return []
    return [Path(p) for p in args.labels]
