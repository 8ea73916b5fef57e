"""Shared test fixtures: locating the read-only ``../shared`` folder (taxonomy page, examples, gold)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# `pytest` run from a checkout (no install, no pythonpath setting yet) must import this repo's tagger.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def find_shared() -> Path:
    """``$TAGGER_SHARED`` if set, else ``<repo>/../shared`` (where CI and checkouts keep it)."""
    return Path(os.environ.get("TAGGER_SHARED") or REPO.parent / "shared").resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared folder; fails (not skips) when missing, so CI cannot silently test nothing."""
    path = find_shared()
    if not (path / "topics.md").is_file():
        pytest.fail(
            f"shared data not found at {path} (no topics.md there): put the shared folder at "
            f"<repo>/../shared or point TAGGER_SHARED at it",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def loaded():
    """The shipped default model, verified and loaded once for the whole test session."""
    from tagger.artifacts import load_model
    from tagger.paths import default_model_root

    return load_model(default_model_root())
