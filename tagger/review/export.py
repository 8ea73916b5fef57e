"""Editors' decisions as training data: rows in exactly the format ``tagger retrain --new FILE`` reads
(:func:`tagger.training.data.read_articles`): ``{"id", "title", "text", "topics", "tags", "outlet",
"published"}``, one per reviewed article.

An accepted prediction is a label as much as a correction is. Where two editors decided one article
(the double-review sample), the later standing decision is exported. Decisions on the random slice
are never exported: they are the unbiased quality figure, and training on them would bias it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tagger.review.store import Store

__all__ = ["decisions_as_new_rows", "export_rows", "parse_since", "write_jsonl"]


def parse_since(text: str) -> datetime:
    """An ISO date or date-time (UTC), e.g. ``2026-12-01`` or ``2026-12-01T08:00``."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"--since {text!r} is not an ISO date or date-time (e.g. 2026-12-01T08:00)") from e
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def export_rows(store: Store, since: datetime | None = None) -> list[dict[str, Any]]:
    latest: dict[int, dict[str, Any]] = {}
    for d in store.standing_decisions(since):
        if not d["random_slice"]:
            latest[d["item_id"]] = d  # oldest first: a later decision replaces an earlier one
    return [{"id": d["doc_id"], "title": d["title"], "text": d["text"], "topics": list(d["topics"]),
             "tags": list(d["tags"]), "outlet": d["outlet"], "published": d["published"]}
            for d in sorted(latest.values(), key=lambda d: d["id"])]


def decisions_as_new_rows(url: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """The store at ``url``'s decisions (made at or after ``since``, UTC) as ``--new`` rows; for
    ``tagger retrain --from-review URL``."""
    with Store(url) as store:
        return export_rows(store, since)


def write_jsonl(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Write atomically (a temporary file renamed into place), so a reader never sees half an export."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
