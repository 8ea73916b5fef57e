"""Default locations: the repo's models/ and the sibling ../shared data folder (overridable)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_NAME = "arabic-news-topics"


def models_dir() -> Path:
    return Path(os.environ.get("TAGGER_MODELS_DIR", REPO_ROOT / "models"))


def default_model_root() -> Path:
    return models_dir() / DEFAULT_MODEL_NAME


def shared_dir() -> Path:
    return Path(os.environ.get("TAGGER_SHARED", REPO_ROOT.parent / "shared"))
