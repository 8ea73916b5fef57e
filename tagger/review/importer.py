"""``tagger review import``: documents into the review queue.

Two kinds of input, told apart line by line:

- **articles** (JSONL/JSON/CSV/TSV rows or scraped pages, read by :mod:`tagger.readers` exactly as
  ``tagger tag`` reads them) are tagged here with the current model (:class:`tagger.tagger.Tagger`,
  with evidence);
- **batch output** lines (``tagger tag --output`` writes ``{"id", "topics", "scores", "dropped_tags",
  "model_version"}``) keep the batch's prediction. Their article is the one the batch kept in the line
  (``tagger tag --keep title,text,url``: one file, read once — the fast way) or, for output made
  without ``--keep``, the batch's own input given with ``--join`` and joined by id. Either way the
  article is built by the reader the batch used (:func:`tagger.readers.parse_record`), so the editor
  sees the text the model tagged.

Every record ends up added, a duplicate of an id already queued, or a reject with a reason — none
is dropped silently.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from tagger.artifacts import LoadedModel
from tagger.document import Document
from tagger.readers import Chunk, Fields, Reject, check_csv_columns, iter_chunks, parse_record, resolve_inputs
from tagger.review.queue import QueueBuilder, Record
from tagger.review.store import Store
from tagger.tagger import InvalidDocumentError, Tagger, TagOptions, TagResult

__all__ = ["ImportStats", "import_files", "records_from_results"]

_EXTRA_FIELDS = ("outlet", "url", "published")
_DEFAULT_FIELDS = Fields()
_BATCH_KEYS = frozenset({"id", "topics", "scores", "model_version"})


@dataclass
class ImportStats:
    read: int = 0
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)

    def summary(self) -> str:
        return (f"read {self.read:,}: added {self.added:,}, already queued {self.duplicates:,}, "
                f"rejected {self.rejected:,}")


@dataclass(frozen=True)
class _Article:
    doc: Document
    extras: Mapping[str, str]
    source: str = ""
    line: int | None = None


def _extras(obj: Any) -> dict[str, str]:
    if not isinstance(obj, Mapping):
        return {}
    return {k: obj[k] for k in _EXTRA_FIELDS if isinstance(obj.get(k), str)}


def _is_batch_line(obj: Any) -> bool:
    # Parsed JSON objects are plain dicts: an exact type check skips the ABC machinery (100k lines).
    return type(obj) is dict and _BATCH_KEYS <= obj.keys() and type(obj.get("scores")) is dict


def _records(paths: Sequence[str], fields: Fields, fmt: str | None,
             ) -> Iterator[tuple[Chunk, int, Mapping[str, Any] | None, Document | Reject]]:
    """(chunk, index, the record's fields or None, its Document/Reject) for every record of the inputs,
    in order; each record is parsed once (:func:`tagger.readers.parse_record`)."""
    specs = resolve_inputs(list(paths), fmt)
    for s in specs:
        check_csv_columns(s, fields)
    for n, spec in enumerate(specs):
        for chunk in iter_chunks(spec, n, size=512):
            for i, (line, data, default_id) in enumerate(zip(chunk.lines, chunk.data, chunk.ids)):
                obj, doc = parse_record(chunk.kind, chunk.source, line, data, default_id, fields)
                yield chunk, i, obj, doc


def _join_index(paths: Sequence[str], fields: Fields, fmt: str | None) -> dict[str, _Article]:
    index: dict[str, _Article] = {}
    for _, _, obj, doc in _records(paths, fields, fmt):
        if isinstance(doc, Document):
            index[doc.id] = _Article(doc, _extras(obj))
    return index


def records_from_results(results: Sequence[TagResult], articles: Sequence[_Article] | Sequence[Document],
                         source: str = "import") -> list[Record]:
    """Records of documents tagged here (TagResults made with ``explain=True``)."""
    out = []
    for r, a in zip(results, articles):
        doc, extras = (a.doc, a.extras) if isinstance(a, _Article) else (a, {})
        out.append(Record(
            doc_id=doc.id, title=doc.title, text=doc.body, model_version=r.model_version, scores=r.scores,
            predicted=[{"topic": t.topic, "score": round(t.score, 4)} for t in r.topics], tags=doc.tags,
            outlet=extras.get("outlet", ""), url=extras.get("url", ""), published=extras.get("published", ""),
            source=source,
            evidence={t.topic: [{"ngram": e.ngram, "weight": round(e.weight, 4)} for e in t.evidence] for t in r.topics},
        ))
    return out


def _batch_record(obj: Mapping[str, Any], article: _Article) -> Record:
    topics = obj.get("topics") or []
    evidence = {t["topic"]: t["evidence"] for t in topics if t.get("evidence")}
    return Record(
        doc_id=str(obj["id"]), title=article.doc.title, text=article.doc.body, model_version=str(obj["model_version"]),
        scores=obj["scores"],  # checked by _bad_batch_line: JSON keys are str, values numbers in [0, 1]
        predicted=[{"topic": t["topic"], "score": t["score"]} for t in topics],
        tags=list(obj.get("dropped_tags") or article.doc.tags), outlet=article.extras.get("outlet", ""),
        url=article.extras.get("url", ""), published=article.extras.get("published", ""), source="batch",
        evidence=evidence or None,
    )


def _bad_batch_line(obj: Mapping[str, Any], topics: frozenset[str]) -> str | None:
    """What is wrong with a batch output line, or None. Exact type checks: one line of 100k costs little."""
    if type(obj["id"]) not in (str, int):
        return "'id' must be a string or an integer"
    scores = obj["scores"]
    if not scores.keys() <= topics:
        return f"unknown topic(s) {sorted(set(scores) - topics)} in 'scores'; this model knows {sorted(topics)}"
    for v in scores.values():
        if type(v) not in (float, int) or not 0.0 <= v <= 1.0:
            return "'scores' must map topics to numbers in [0, 1]"
    if type(obj["model_version"]) is not str or not obj["model_version"]:
        return "'model_version' must be a non-empty string"
    tags = obj.get("dropped_tags")
    if tags is not None and (type(tags) is not list or not all(type(t) is str for t in tags)):
        return "'dropped_tags' must be a list of strings"
    chosen = obj["topics"]
    if type(chosen) is not list or not all(
            type(t) is dict and t.get("topic") in scores and type(t.get("score")) in (float, int)
            for t in chosen):
        return "'topics' must be a list of {\"topic\", \"score\"} objects naming scored topics"
    return None


def import_files(store: Store, loaded: LoadedModel, paths: Sequence[str], *, join: Sequence[str] = (),
                 fields: Fields = _DEFAULT_FIELDS, fmt: str | None = None, batch_size: int = 2000) -> ImportStats:
    """Queue every record of ``paths`` (see the module doc). Raises :class:`tagger.io.InputError` for an
    input that cannot be read at all; a bad record becomes a reject in the returned stats."""
    tagger = Tagger(loaded, on_too_long="truncate")
    builder = QueueBuilder.for_model(loaded)
    known_topics = frozenset(tagger.topics)
    index = _join_index(join, fields, fmt) if join else {}
    stats = ImportStats()
    pending: list[Record] = []
    to_tag: list[_Article] = []

    def reject(r: Reject) -> None:
        stats.rejected += 1
        stats.rejects.append(r)

    def tag_pending() -> None:
        if not to_tag:
            return
        docs = [a.doc for a in to_tag]
        try:
            results: list[TagResult | None] = list(tagger.tag_many(docs, TagOptions(explain=True)))
        except InvalidDocumentError:
            results = []
            for a in to_tag:
                try:
                    results.append(tagger.tag(a.doc, TagOptions(explain=True)))
                except InvalidDocumentError as e:
                    reject(Reject(a.source, a.line, a.doc.id, "empty_text", str(e)))
                    results.append(None)
        pairs = [(r, a) for r, a in zip(results, to_tag) if r is not None]
        pending.extend(records_from_results([r for r, _ in pairs], [a for _, a in pairs]))
        to_tag.clear()

    # One writer thread: a chunk is written (the driver and the database work without the GIL) while
    # the next one is read and built; at most one write waits, so memory stays at two chunks.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-import-writer")
    writing: list[Future[tuple[int, list[str]]]] = []

    def collect() -> None:
        if writing:
            added, dups = writing.pop().result()
            stats.added += added
            stats.duplicates += len(dups)

    def flush() -> None:
        tag_pending()
        if pending:
            rows = builder.rows(pending)
            pending.clear()
            collect()
            writing.append(writer.submit(store.add_items, rows))

    try:
        seen: set[str] = set()
        for chunk, i, obj, doc in _records(paths, fields, fmt):
            stats.read += 1
            line = chunk.lines[i]
            if _is_batch_line(obj):
                assert obj is not None
                problem = _bad_batch_line(obj, known_topics)
                doc_id = str(obj["id"])
                if problem:
                    reject(Reject(chunk.source, line, doc_id, "invalid_field", f"batch output line: {problem}"))
                    continue
                if isinstance(doc, Document):  # the article kept in the line (tagger tag --keep title,text)
                    article = _Article(doc, _extras(obj))
                elif doc_id in index:
                    article = index[doc_id]
                elif isinstance(doc, Reject) and doc.reason != "missing_text":  # kept fields that are not an article
                    reject(replace(doc, detail=f"batch output line: {doc.detail}"))
                    continue
                else:
                    reject(Reject(chunk.source, line, doc_id, "missing_text",
                                  f"batch output line for {doc_id!r} carries no text"
                                  f"{', and no --join input has that id' if join else ''}: make batch output with "
                                  "`tagger tag --keep title,text` (or give the batch's input files with --join)"))
                    continue
                record: Record | _Article = _batch_record(obj, article)
            elif isinstance(doc, Reject):
                reject(doc)
                continue
            else:
                record = _Article(doc, _extras(obj), chunk.source, line)
            rid = record.doc_id if isinstance(record, Record) else record.doc.id
            if rid in seen:
                reject(Reject(chunk.source, line, rid, "invalid_document", f"id {rid!r} appears twice in this import"))
                continue
            seen.add(rid)
            (pending if isinstance(record, Record) else to_tag).append(record)  # type: ignore[arg-type]
            if len(pending) + len(to_tag) >= batch_size:
                flush()
        flush()
        collect()
    finally:
        for f in writing:  # an error while reading: the chunk being written still lands, or its error shows
            f.result()
        writer.shutdown()
    return stats

