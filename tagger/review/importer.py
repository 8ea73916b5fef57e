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

import multiprocessing as mp
import signal
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from tagger.artifacts import LoadedModel
from tagger.document import Document
from tagger.readers import Chunk, Fields, Reject, check_csv_columns, iter_chunks, parse_record, resolve_inputs
from tagger.review.queue import QueueBuilder, Record
from tagger.review.store import EncodedItems, Store, encode_items
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
    workers: int = 0  # worker processes that prepared the records (0: all in this process)

    def summary(self) -> str:
        return (f"read {self.read:,}: added {self.added:,}, already queued {self.duplicates:,}, "
                f"rejected {self.rejected:,}{f' ({self.workers} worker processes)' if self.workers else ''}")


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


def _twice(source: str, line: int | None, doc_id: str) -> Reject:
    return Reject(source, line, doc_id, "invalid_document", f"id {doc_id!r} appears twice in this import")


#: One chunk's outcome: queue rows (driver-ready), each row's (source, line), rejects, records read.
_ChunkResult = tuple[EncodedItems, list[tuple[str, int | None]], list[Reject], int]


class _ChunkImporter:
    """Turns one chunk of input records into queue rows and rejects, in input order (everything but
    the database write and the across-chunk duplicate check, so it can run in a worker process)."""

    def __init__(self, loaded: LoadedModel, fields: Fields, index: Mapping[str, _Article], joined: bool,
                 sqlite: bool) -> None:
        self.sqlite = sqlite
        self.tagger = Tagger(loaded, on_too_long="truncate")
        self.builder = QueueBuilder.for_model(loaded)
        self.known_topics = frozenset(self.tagger.topics)
        self.fields, self.index, self.joined = fields, index, joined

    def __call__(self, chunk: Chunk) -> _ChunkResult:
        """(rows for Store.add_items, where each row's record is (source, line), rejects, records read)."""
        rejects: list[Reject] = []
        pending: list[Record] = []
        places: list[tuple[str, int | None]] = []
        to_tag: list[_Article] = []
        for line, data, default_id in zip(chunk.lines, chunk.data, chunk.ids):
            obj, doc = parse_record(chunk.kind, chunk.source, line, data, default_id, self.fields)
            if _is_batch_line(obj):
                assert obj is not None
                problem = _bad_batch_line(obj, self.known_topics)
                doc_id = str(obj["id"])
                if problem:
                    rejects.append(Reject(chunk.source, line, doc_id, "invalid_field", f"batch output line: {problem}"))
                elif isinstance(doc, Document):  # the article kept in the line (tagger tag --keep title,text)
                    pending.append(_batch_record(obj, _Article(doc, _extras(obj))))
                    places.append((chunk.source, line))
                elif doc_id in self.index:
                    pending.append(_batch_record(obj, self.index[doc_id]))
                    places.append((chunk.source, line))
                elif isinstance(doc, Reject) and doc.reason != "missing_text":  # kept fields that are not an article
                    rejects.append(replace(doc, detail=f"batch output line: {doc.detail}"))
                else:
                    rejects.append(Reject(
                        chunk.source, line, doc_id, "missing_text",
                        f"batch output line for {doc_id!r} carries no text"
                        f"{', and no --join input has that id' if self.joined else ''}: make batch output with "
                        "`tagger tag --keep title,text` (or give the batch's input files with --join)"))
            elif isinstance(doc, Reject):
                rejects.append(doc)
            else:
                to_tag.append(_Article(doc, _extras(obj), chunk.source, line))
        tagged = self._tag(to_tag, rejects)
        pending.extend(r for r, _ in tagged)
        places.extend((a.source, a.line) for _, a in tagged)
        # An id twice in one chunk (across chunks the main process checks): the first stands.
        seen: set[str] = set()
        keep = []
        for k, (r, (source, line)) in enumerate(zip(pending, places)):
            if r.doc_id in seen:
                rejects.append(_twice(source, line, r.doc_id))
            else:
                seen.add(r.doc_id)
                keep.append(k)
        if len(keep) < len(pending):
            pending, places = [pending[k] for k in keep], [places[k] for k in keep]
        return encode_items(self.builder.rows(pending), self.sqlite), places, rejects, len(chunk.lines)

    def _tag(self, articles: list[_Article], rejects: list[Reject]) -> list[tuple[Record, _Article]]:
        if not articles:
            return []
        options = TagOptions(explain=True)
        try:
            results: list[TagResult | None] = list(self.tagger.tag_many([a.doc for a in articles], options))
        except InvalidDocumentError:
            results = []
            for a in articles:
                try:
                    results.append(self.tagger.tag(a.doc, options))
                except InvalidDocumentError as e:
                    rejects.append(Reject(a.source, a.line, a.doc.id, "empty_text", str(e)))
                    results.append(None)
        pairs = [(r, a) for r, a in zip(results, articles) if r is not None]
        return list(zip(records_from_results([r for r, _ in pairs], [a for _, a in pairs]), [a for _, a in pairs]))


# A worker process holds one _ChunkImporter, handed over by fork (model, join index: nothing pickled).
_WORKER: _ChunkImporter | None = None


def _init_worker(importer: _ChunkImporter) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    _WORKER = importer


def _work(chunk: Chunk) -> _ChunkResult:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(chunk)


def _chunks(paths: Sequence[str], fields: Fields, fmt: str | None, size: int) -> Iterator[Chunk]:
    specs = resolve_inputs(list(paths), fmt)
    for s in specs:
        check_csv_columns(s, fields)
    for n, spec in enumerate(specs):
        yield from iter_chunks(spec, n, size=size)


def _usable_workers(workers: int) -> int:
    """Worker processes that can be forked here: fork only (a worker gets the model and join index as
    they are in memory, nothing pickled), and not from a process running other threads (a forked
    child could inherit a held lock); else 0, all inline. The CLI's process qualifies."""
    if workers < 1 or "fork" not in mp.get_all_start_methods() or threading.active_count() > 1:
        return 0
    return workers


def _processed(importer: _ChunkImporter, chunks: Iterator[Chunk], workers: int) -> Iterator[_ChunkResult]:
    """Each chunk's result in input order: inline (``workers`` 0), or from that many forked processes
    with a bounded number of chunks in flight."""
    if workers < 1:
        yield from map(importer, chunks)
        return
    with mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(importer,)) as pool:
        in_flight: deque[Any] = deque()
        for chunk in chunks:
            in_flight.append(pool.apply_async(_work, (chunk,)))
            while len(in_flight) > 2 * workers:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()


def import_files(store: Store, loaded: LoadedModel, paths: Sequence[str], *, join: Sequence[str] = (),
                 fields: Fields = _DEFAULT_FIELDS, fmt: str | None = None, batch_size: int = 2000,
                 workers: int = 0) -> ImportStats:
    """Queue every record of ``paths`` (see the module doc). Raises :class:`tagger.io.InputError` for an
    input that cannot be read at all; a bad record becomes a reject in the returned stats.

    Records go in chunks of ``batch_size``: one transaction each. With ``workers`` >= 1, chunks are
    parsed, checked and turned into rows by that many forked worker processes while this one writes —
    the same rows and rejects in the same order as inline (``workers=0``); ``stats.workers`` says how
    many were used (0 where forking is not safe, see :func:`_usable_workers`)."""
    importer = _ChunkImporter(loaded, fields, _join_index(join, fields, fmt) if join else {}, bool(join),
                              store.engine.dialect.name == "sqlite")
    stats = ImportStats(workers=_usable_workers(workers))
    seen: set[str] = set()
    # One writer thread: a chunk is written (the driver and the database work without the GIL) while
    # the next one is read and built; at most one write waits, so memory stays bounded. Started after
    # the worker processes are forked (they must not inherit a running thread).
    writer: ThreadPoolExecutor | None = None
    writing: list[Future[tuple[int, list[str]]]] = []

    def collect() -> None:
        if writing:
            added, dups = writing.pop().result()
            stats.added += added
            stats.duplicates += len(dups)

    results = _processed(importer, _chunks(paths, fields, fmt, batch_size), stats.workers)
    try:
        for (ids, params), places, rejects, read in results:
            stats.read += read
            fresh: EncodedItems = ([], [])
            for rid, row, (source, line) in zip(ids, params, places):
                if rid in seen:
                    rejects.append(_twice(source, line, rid))
                else:
                    seen.add(rid)
                    fresh[0].append(rid)
                    fresh[1].append(row)
            if rejects:
                stats.rejects.extend(sorted(rejects, key=lambda r: r.line or 0))
                stats.rejected += len(rejects)
            collect()
            if fresh[0]:
                if writer is None:
                    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-import-writer")
                writing.append(writer.submit(store.add_encoded, fresh))
        collect()
    finally:
        for f in writing:  # an error while reading: the chunk being written still lands, or its error shows
            f.result()
        if writer is not None:
            writer.shutdown()
    return stats
