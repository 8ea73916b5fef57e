"""The TagStreams open in one server worker: how many may be open, and which to cancel.

In grpcio's synchronous server a stream holds one RPC thread for as long as it is open, including
while it waits for the client's next message. Without a cap, ``--threads`` idle streams would leave
no thread for Tag, TagBatch or health checks, which would then wait until their deadlines. So:

- at most ``limit`` streams are open at once (the rest of the threads stay free for other calls);
  one more is refused at once with RESOURCE_EXHAUSTED by the caller of :meth:`OpenStreams.open`;
- a stream that has waited ``idle_timeout`` seconds for a message is cancelled, so an abandoned
  client cannot keep a slot and a thread forever;
- when the server stops, streams waiting for a message are cancelled at once rather than holding
  shutdown for the whole grace period (a busy stream finishes its message, then ends UNAVAILABLE).

The client (tagger.client) treats CANCELLED like UNAVAILABLE: it reconnects and resends what was
not answered, so a cancelled stream loses nothing.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = ["OpenStreams", "Stream"]


@dataclass(eq=False)
class Stream:
    context: grpc.ServicerContext
    waiting_since: float | None = None  # monotonic time the stream began waiting for a message
    cancelled_idle: bool = False


class OpenStreams:
    """A registry of open streams with a cap and an idle reaper (see the module docstring)."""

    def __init__(self, limit: int, idle_timeout: float) -> None:
        if limit < 1 or idle_timeout < 0:
            raise ValueError("limit must be >= 1 and idle_timeout >= 0")
        self.limit, self.idle_timeout = limit, idle_timeout
        self._open: set[Stream] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def open(self, context: grpc.ServicerContext) -> Stream | None:
        """Register a new stream, or None when ``limit`` are already open."""
        with self._lock:
            if len(self._open) >= self.limit:
                return None
            stream = Stream(context)
            self._open.add(stream)
            return stream

    def close(self, stream: Stream) -> None:
        with self._lock:
            self._open.discard(stream)

    @staticmethod
    def watch(stream: Stream, requests: Iterator[Any]) -> Iterator[Any]:
        """``requests``, noting when the stream is waiting for the client (the time that can run out)."""
        while True:
            stream.waiting_since = time.monotonic()
            try:
                request = next(requests)
            except StopIteration:
                return
            finally:
                stream.waiting_since = None
            yield request

    def cancel_idle(self, older_than: float) -> int:
        """Cancel every stream that has waited for a message for ``older_than`` seconds or more."""
        now = time.monotonic()
        with self._lock:
            idle = [s for s in self._open if s.waiting_since is not None and now - s.waiting_since >= older_than]
        for s in idle:
            s.cancelled_idle = True
            s.context.cancel()
        return len(idle)

    def start(self) -> None:
        """Start the idle reaper (nothing to do when ``idle_timeout`` is 0)."""
        if self.idle_timeout <= 0 or self._reaper is not None:
            return
        period = min(1.0, self.idle_timeout / 4)

        def reap() -> None:
            while not self._stop.wait(period):
                self.cancel_idle(self.idle_timeout)

        self._reaper = threading.Thread(target=reap, name="tagger-stream-reaper", daemon=True)
        self._reaper.start()

    def stop(self) -> None:
        """Stop the reaper and cancel the streams waiting for a message (server shutdown)."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join()
        self.cancel_idle(0.0)
