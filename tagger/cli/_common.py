"""Options and helpers shared by subcommands."""
from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from tagger.artifacts import ArtifactError, LoadedModel, load_model
from tagger.cli import CLIError
from tagger.config import ConfigError, Settings, _bool, env_name, flag_name, from_args, setting_fields


def add_settings_arguments(p: argparse.ArgumentParser, cls: type[Settings] = Settings,
                           names: Iterable[str] | None = None) -> None:
    """One flag per setting of ``cls`` (or the ``names`` given). Flags default to None so
    :func:`tagger.config.from_args` can tell "not given" and fall back to the environment."""
    defaults = cls()
    for f in setting_fields(cls, names):
        meta = f.metadata
        default = getattr(defaults, f.name)
        shown = "the shipped model" if f.name == "model" else default
        help_text = f"{meta['help']} [env {env_name(f.name)}; default {shown}]"
        if meta["parse"] is _bool:
            p.add_argument(flag_name(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=help_text)
        else:
            p.add_argument(flag_name(f.name), dest=f.name, default=None, metavar=meta["metavar"] or f.name.upper(),
                           type=meta["parse"], choices=meta["choices"], help=help_text)


def add_model_option(p: argparse.ArgumentParser) -> None:
    add_settings_arguments(p, Settings, ["model"])


def settings(args: argparse.Namespace, cls: type[Settings] = Settings) -> Settings:
    """The command's settings: flags < environment < defaults, one error line for a bad value."""
    try:
        return from_args(args, cls=cls)
    except ConfigError as e:
        raise CLIError(str(e)) from e


def load(args: argparse.Namespace) -> LoadedModel:
    """The model chosen by --model / TAGGER_MODEL (else the shipped one), verified."""
    try:
        return load_model(settings(args).model_path)
    except ArtifactError as e:
        raise CLIError(str(e)) from e


def check_data_files(paths: Iterable[Path]) -> None:
    """Every input file exists, or one line saying which and where the data defaults come from."""
    from tagger.paths import shared_dir

    for path in paths:
        if Path(path).exists() and not Path(path).is_file():
            raise CLIError(f"{path}: not a file")
        if not Path(path).is_file():
            raise CLIError(f"{path}: no such file (training and evaluation data default to {shared_dir()}, the "
                           "folder holding corpus/ and gold/: set TAGGER_SHARED, or pass the path)")


def require_training(command: str) -> None:
    """Training needs the `train` extra (scikit-learn, SciPy); say so instead of a traceback."""
    import importlib.util

    missing = [m for m in ("sklearn", "scipy", "joblib") if importlib.util.find_spec(m) is None]
    if missing:
        raise CLIError(f"{command} trains a model, which needs scikit-learn, SciPy and joblib "
                       f"(missing: {', '.join(missing)}): pip install 'tagger[train]'")


def add_labels_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--labels", action="append", default=None, metavar="PATH",
        help="label file: JSONL of {\"id\", \"topics\"} giving corpus articles their full labels by id; repeatable; "
        "'none' for no label files (default: training/labels/*.jsonl, the annotations of the default corpus, "
        "when --corpus is left at its default; none for another corpus)",
    )


def label_files(args: argparse.Namespace, default_corpus: Path) -> list[Path]:
    """The label files to train with (see :func:`tagger.training.assemble.choose_label_files`)."""
    from tagger.training.assemble import choose_label_files

    try:
        return choose_label_files(args.labels, Path(args.corpus), default_corpus)
    except ValueError as e:
        raise CLIError(str(e)) from e
