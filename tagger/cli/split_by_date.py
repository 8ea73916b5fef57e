"""`tagger split-by-date`: cut JSONL articles at a publication date (e.g. to hold out the newest
articles as the "new data" of a retraining walk-through)."""
from __future__ import annotations

import argparse
from pathlib import Path

from tagger.cli import CLIError, emit


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cutoff", required=True, help="date, e.g. 2018-06-01 (UTC); 'before' is strictly earlier")
    p.add_argument("--out-dir", type=Path, required=True,
                   help="folder for <stem>-before.jsonl and <stem>-after.jsonl per input")
    p.add_argument("paths", type=Path, nargs="+", metavar="FILE", help="JSONL(.gz/.xz) articles with 'published'")


def run(args: argparse.Namespace) -> int:
    from tagger.io import InputError
    from tagger.training.data import split_by_date

    try:
        counts = split_by_date(args.paths, args.cutoff, args.out_dir)
    except (InputError, ValueError, OSError) as e:
        raise CLIError(str(e)) from e
    for path, (before, after) in counts.items():
        emit(f"{path}: {before} before, {after} on or after {args.cutoff}")
    return 0
