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
