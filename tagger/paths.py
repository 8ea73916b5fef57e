"""Default locations: the shipped model and the training data folder.

The default model travels inside the package: a wheel carries the repo's top-level ``models/`` as
``tagger/models/`` (pyproject.toml maps it), and a source checkout reads ``models/`` in place, so an
installed tagger and a checkout tag with the same model. Choosing another model is a setting
(``--model`` / ``TAGGER_MODEL``, :class:`tagger.config.Settings`), not a path edit.

Training data (``../shared`` beside a checkout, or ``TAGGER_SHARED``) is only a default of the
commands that train or evaluate; nothing else looks for it.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_NAME = "arabic-news-topics"


def packaged_models_dir() -> Path:
    """The folder of shipped models: inside an installed package, else the checkout's ``models/``."""
    installed = PACKAGE_DIR / "models"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "models"


def default_model_root() -> Path:
    """The shipped default model's folder (its newest version is the one used)."""
    return packaged_models_dir() / DEFAULT_MODEL_NAME


def shared_dir() -> Path:
    """Training and evaluation data: ``TAGGER_SHARED``, else ``../shared`` beside a source checkout,
    else ``../shared`` from the working directory."""
    env = os.environ.get("TAGGER_SHARED")
    if env:
        return Path(env)
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout.parent / "shared"
    return Path("..") / "shared"
