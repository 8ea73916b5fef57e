"""`tagger info`: print the model's manifest (version, topics, thresholds, metrics, data hashes)."""
from __future__ import annotations

import argparse
import json

from tagger.cli import emit
from tagger.cli._common import add_model_option, load


def register(p: argparse.ArgumentParser) -> None:
    add_model_option(p)


def run(args: argparse.Namespace) -> int:
    loaded = load(args)
    emit(json.dumps(loaded.manifest | {"path": str(loaded.path)}, ensure_ascii=False, indent=2))
    return 0
