"""Training data: the weakly labelled corpus and gold-labelled articles, read as streams."""
from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from tagger.document import from_fields
from tagger.io import InputError, read_jsonl
from tagger.taxonomy import Taxonomy

__all__ = ["Article", "read_articles", "read_gold", "split_by_date"]


@dataclass(frozen=True)
class Article:
    """One training article. ``topics`` is None when the article has no gold labels."""

    id: str
    title: str
    body: str
    outlet: str = ""
    sections: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    topics: tuple[str, ...] | None = None
    published: str = ""


def _str_field(obj: dict, key: str, where: str, required: bool = False) -> str:
    value = obj.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    if required and not value:
        raise InputError(f"{where}: field '{key}' is missing or empty")
    return value


def _str_list(obj: dict, key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: field '{key}' must be a list of strings")
    return tuple(value)


def read_articles(
    path: Path | str, taxonomy: Taxonomy | None = None,
    check: Callable[[Mapping[str, Any], Article, str], None] | None = None,
) -> Iterator[Article]:
    """Stream articles from JSONL(.gz/.xz). With a taxonomy, a ``topics`` field is validated
    against it (unknown ids raise, naming the line); without, topics are ignored. ``check(row,
    article, "file:line")``, if given, sees each raw row with its article and may raise InputError."""
    for line_no, obj in read_jsonl(path):
        where = f"{path}:{line_no}"
        doc = from_fields(
            id=_str_field(obj, "id", where, required=True),
            title=_str_field(obj, "title", where),
            text=_str_field(obj, "text", where),
        )
        topics = None
        if taxonomy is not None and "topics" in obj:
            topics = tuple(taxonomy.validate(_topics_list(obj, where), where=where))
        article = Article(
            id=doc.id, title=doc.title, body=doc.body, outlet=_str_field(obj, "outlet", where),
            sections=_str_list(obj, "sections", where), tags=_str_list(obj, "tags", where), topics=topics,
            published=_str_field(obj, "published", where),
        )
        if check is not None:
            check(obj, article, where)
        yield article


def _topics_list(obj: dict, where: str) -> list:
    value = obj["topics"]
    if not isinstance(value, list):
        raise InputError(f"{where}: field 'topics' must be a list of topic ids")
    return value


def read_gold(path: Path | str, taxonomy: Taxonomy) -> list[Article]:
    """Gold-labelled articles; every line must carry a valid ``topics`` list."""
    out = []
    seen: dict[str, int] = {}
    for n, art in enumerate(read_articles(path, taxonomy), 1):
        if art.topics is None:
            raise InputError(f"{path}: article {art.id} has no 'topics' field; gold files need one per line")
        if not (art.title.strip() or art.body.strip()):
            raise InputError(f"{path}: article {art.id!r} has no text to score (empty 'title' and 'text' fields)")
        if art.id in seen:
            raise InputError(f"{path}: duplicate id {art.id!r} (articles {seen[art.id]} and {n})")
        seen[art.id] = n
        out.append(art)
    return out


def _parse_date(text: str) -> _dt.datetime:
    """RSS dates ("Mon, 05 Mar 2018 10:46:41 +0000") or ISO 8601; naive times are taken as UTC."""
    try:
        d = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        d = _dt.datetime.fromisoformat(text.strip())
    return d if d.tzinfo else d.replace(tzinfo=_dt.timezone.utc)


def split_by_date(paths: Sequence[Path], cutoff: str, out_dir: Path) -> dict[str, tuple[int, int]]:
    """Write ``<stem>-before.jsonl`` / ``<stem>-after.jsonl`` per input: articles published before the
    cut-off date (UTC midnight) and on or after it. Lines are copied as they are."""
    cut = _parse_date(cutoff)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path in paths:
        stem = Path(path).name.split(".")[0]
        n = [0, 0]
        with open(out_dir / f"{stem}-before.jsonl", "w", encoding="utf-8") as before, \
                open(out_dir / f"{stem}-after.jsonl", "w", encoding="utf-8") as after:
            for line_no, obj in read_jsonl(path):
                try:
                    late = _parse_date(str(obj.get("published") or "")) >= cut
                except ValueError as e:
                    raise InputError(f"{path}:{line_no}: cannot read 'published' date: {e}") from e
                (after if late else before).write(json.dumps(obj, ensure_ascii=False) + "\n")
                n[late] += 1
        counts[str(path)] = (n[0], n[1])
    return counts
