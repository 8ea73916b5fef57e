"""Live-traffic sampling for review: ``tagger serve --review-db URL --review-sample 0.01`` queues a share of
the documents it serves, with the prediction it returned, in the review store.

The RPC path only draws a random number and, for a sampled document, puts it on a bounded in-memory
queue without waiting (:meth:`ReviewSampler.offer`): it never blocks, never touches the database and
never raises. A background thread writes the queue to the store in small batches. When the queue is
full, or the store fails, documents are dropped and counted (``tagger_review_sample_dropped_total``
by reason), never retried into the RPC's time.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import random
import threading
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter

from tagger.document import Document
from tagger.review.queue import QueueBuilder, Record
from tagger.tagger import TagResult

__all__ = ["ReviewSampler"]

log = logging.getLogger("tagger.review.sampler")

_STOP = object()


def _content_id(doc: Document) -> str:
    """An id for a document served without one: the same text always gets the same id."""
    return "live-" + hashlib.sha256(f"{doc.title}\n{doc.body}".encode("utf-8", "surrogatepass")).hexdigest()[:20]


class ReviewSampler:
    """Samples ``rate`` of the offered documents into ``store`` (anything with ``add_items(rows)``, e.g.
    :class:`tagger.review.store.Store`), through a queue of at most ``capacity`` documents."""

    def __init__(self, store: object, builder: QueueBuilder, rate: float, *, capacity: int = 1000,
                 batch: int = 100, flush_seconds: float = 1.0, registry: CollectorRegistry | None = None,
                 rng: Callable[[], float] | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the review sample rate must be in [0, 1], got {rate!r}")
        if capacity < 1 or batch < 1:
            raise ValueError("capacity and batch must be >= 1")
        self.store, self.builder, self.rate = store, builder, rate
        self.batch, self.flush_seconds = batch, flush_seconds
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._random = rng or random.Random().random
        kw = {"registry": registry} if registry is not None else {}
        self.recorded = Counter("tagger_review_sample_recorded", "Served documents queued for review", **kw)
        self.dropped = Counter("tagger_review_sample_dropped",
                               "Sampled documents not queued for review: buffer full or store error", ["reason"], **kw)
        self.dropped.labels("buffer_full")
        self.dropped.labels("store_error")
        self._thread = threading.Thread(target=self._run, name="review-sampler", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ RPC side
    def offer(self, docs: Sequence[Document], results: Sequence[TagResult]) -> int:
        """Called on the RPC path after tagging: sample, enqueue without waiting. Returns how many were
        enqueued. Never raises."""
        taken = 0
        try:
            for doc, result in zip(docs, results):
                if self.rate <= 0 or self._random() >= self.rate:
                    continue
                try:
                    self._queue.put_nowait((doc, result))
                    taken += 1
                except queue.Full:
                    self.dropped.labels("buffer_full").inc()
        except Exception:  # noqa: BLE001 - sampling must never fail an RPC
            log.exception("review sampling failed; the RPC is unaffected")
        return taken

    # ------------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        stop = False
        while not stop:
            pending: list[tuple[Document, TagResult]] = []
            try:
                first = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                continue
            if first is _STOP:
                break
            pending.append(first)
            while len(pending) < self.batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                pending.append(item)
            self._write(pending)

    def _write(self, pending: list[tuple[Document, TagResult]]) -> None:
        records = [Record(
            doc_id=doc.id or _content_id(doc),
            title=doc.title, text=doc.body, model_version=r.model_version, scores=r.scores,
            predicted=[{"topic": t.topic, "score": round(t.score, 4)} for t in r.topics], tags=doc.tags,
            source="live",
            evidence={t.topic: [{"ngram": e.ngram, "weight": round(e.weight, 4)} for e in t.evidence]
                      for t in r.topics} if any(t.evidence for t in r.topics) else None,
        ) for doc, r in pending]
        records = list({r.doc_id: r for r in reversed(records)}.values())[::-1]  # the same document twice: once
        try:
            added, duplicates = self.store.add_items(self.builder.rows(records))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a store outage loses samples, never the server
            log.exception("could not write %d sampled documents to the review store", len(records))
            self.dropped.labels("store_error").inc(len(records))
            return
        self.recorded.inc(added)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread (waits at most ``timeout`` seconds)."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
