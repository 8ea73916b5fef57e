"""Opportunistic batching of single-document calls: concurrent Tag (and TagStream) documents are
tagged together in one :meth:`Tagger.tag_many` call.

Why: ``tag_many`` has a fixed cost per call (checks, array set-up, compiled-kernel dispatch) that is
larger than the per-document work for one news article, so one document alone costs about three
times its share of a batch of eight (docs/performance-serving.md has the numbers). Results do not
depend on a document's neighbours (``tag_many``'s contract), so batching changes no answer.

How, without a timer or a thread of its own: each caller queues its document, then tries to become
the *leader*. The leader takes everything queued, tags it (grouped by model and options: one call
per group), hands each caller its result, and wakes the next waiting caller to lead the documents
queued meanwhile. Under no load a call is its own batch at once (no added latency); under load the
documents that arrive while one batch is tagged form the next one. A batch that fails because of
one invalid document is retried one document at a time, so each caller gets its own result or error.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

from tagger.document import Document
from tagger.tagger import Tagger, TagOptions, TagResult

__all__ = ["Coalescer"]

# Bounds the latency one leader adds to its own call (it tags the others' documents first).
MAX_BATCH = 32
# A waiter re-checks at least this often (seconds), so a lost wake-up can only delay, never hang, a call.
_RECHECK = 0.01


class _Item:
    __slots__ = ("tagger", "doc", "options", "result", "error", "done", "wake")

    def __init__(self, tagger: Tagger, doc: Document, options: TagOptions) -> None:
        self.tagger, self.doc, self.options = tagger, doc, options
        self.result: TagResult | None = None
        self.error: BaseException | None = None
        self.done = False
        self.wake = threading.Event()


class Coalescer:
    """Tags single documents from many threads in shared ``tag_many`` calls (see the module docstring)."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._queue: list[_Item] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self.batches = 0  # tag_many calls made, for tests and benches
        self.documents = 0

    def tag(self, tagger: Tagger, doc: Document, options: TagOptions) -> TagResult:
        """Tag one document; raises what ``tagger.tag_many([doc], options)`` would raise."""
        item = _Item(tagger, doc, options)
        with self._queue_lock:
            self._queue.append(item)
        while not item.done:
            if self._leader.acquire(blocking=False):
                try:
                    self._lead()
                finally:
                    self._leader.release()
                self._wake_next()
            else:
                item.wake.wait(_RECHECK)
                item.wake.clear()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _lead(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        groups: dict[tuple[int, TagOptions], list[_Item]] = {}
        for item in batch:
            groups.setdefault((id(item.tagger), item.options), []).append(item)
        for items in groups.values():
            self._tag_group(items)
            for item in items:
                item.done = True
                item.wake.set()

    def _tag_group(self, items: Sequence[_Item]) -> None:
        tagger, options = items[0].tagger, items[0].options
        self.batches += 1
        self.documents += len(items)
        try:
            for item, result in zip(items, tagger.tag_many([i.doc for i in items], options)):
                item.result = result
            return
        except Exception as e:
            if len(items) == 1:
                items[0].error = e
                return
        for item in items:  # one bad document failed the batch: each caller gets its own answer
            try:
                [item.result] = tagger.tag_many([item.doc], options)
            except Exception as e:
                item.error = e

    def _wake_next(self) -> None:
        with self._queue_lock:
            waiting = self._queue[0] if self._queue else None
        if waiting is not None:
            waiting.wake.set()
