"""Input fields carried into output lines: what ``tagger tag --keep`` and ``tag_dataframe(keep=...)``
(Spark) mean, in one place.

A kept field is the input record's own value, as read (a JSON object's field, a CSV cell, a page's
whole text under the ``raw`` field name; on Spark, the DataFrame column), written before the output
line's own keys. A field the record does not have is written as ``null``, as Spark writes a missing
column value. Names the output line uses itself cannot be kept (the line would have the key twice).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["OUTPUT_KEYS", "check_keep", "kept_values", "with_kept"]

#: Keys of an output line (:meth:`tagger.tagger.TagResult.to_json`); none of them can be kept.
OUTPUT_KEYS: Final = ("id", "topics", "scores", "dropped_tags", "model_version", "truncated")


def check_keep(keep: Iterable[str], reserved: Iterable[str] = OUTPUT_KEYS) -> tuple[str, ...]:
    """The field names to keep, in order, without repeats; ValueError naming any that clash with
    ``reserved`` (the output's own keys) or that are empty."""
    names = tuple(dict.fromkeys(keep))
    if any(not n for n in names):
        raise ValueError("an empty field name cannot be kept")
    clash = [n for n in names if n in set(reserved)]
    if clash:
        raise ValueError(f"cannot keep {clash}: the output lines have fields of that name already")
    return names


def kept_values(record: Mapping[str, Any] | None, keep: Iterable[str]) -> dict[str, Any]:
    """``{name: the record's value or None}`` for each kept name."""
    if record is None:
        return {n: None for n in keep}
    return {n: record.get(n) for n in keep}


def with_kept(line: str, kept: Mapping[str, Any] | None) -> str:
    """An output line (one JSON object) with the ``kept`` fields first. A value JSON cannot hold (a
    Spark date) is written as its text."""
    if not kept:
        return line
    head = json.dumps(kept, ensure_ascii=False, default=str)
    return f"{head[:-1]}, {line[1:]}"
