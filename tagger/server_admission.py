"""Admission control of one server worker: which thread runs an RPC, and which RPCs are refused at once.

A gRPC Python server hands every RPC to a thread pool, first come first served. With one pool, 120
big TagBatch calls fill it and a health check waits behind all of them: a liveness probe would kill
a busy, healthy server. So the work is split into *lanes*, each its own thread pool (grpcio picks a
handler's pool from its ``experimental_thread_pool`` attribute):

- ``control``: health Check, ListTopics, GetModelInfo; two threads that tagging can never take;
- ``tag``: Tag and TagStream (one document per message), ``--threads`` threads;
- ``batch``: TagBatch, ``--batch-threads`` threads;
- ``misc``: the server's default pool, for reflection and health Watch;
- ``reject``: one thread that answers the RPCs refused below, without reading their messages.

Refusals happen before an RPC is queued, in :class:`AdmissionInterceptor`, which gRPC runs on its
polling thread: a lane that already holds its limit of RPCs (waiting or running) refuses the next one
with RESOURCE_EXHAUSTED at once, so nothing piles up behind a saturated lane. Within the batch lane
the real cost is counted: a TagBatch takes its documents from a :class:`DocumentBudget` after its
message is parsed and gives them back when answered; one that would go over is refused at once.

Memory follows from the same bounds: a request message is read only by the thread that runs it, so
at most (tag + batch + control threads) messages of at most ``--max-message-mb`` are held at once,
whatever the number of calls sent (refused calls are answered without their message being read).
And once the last big request in flight is answered, :class:`BigRequests` hands the freed heap back
to the operating system (glibc keeps it otherwise: RSS stayed near its peak after a burst).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

import grpc

__all__ = ["BUSY", "AdmissionInterceptor", "BigRequests", "DocumentBudget", "Lane", "rejecting_handler"]

# Trailing metadata of a refusal because the worker is busy (not because the request is wrong or too big):
# the client may retry after this many milliseconds (tagger.client does, within its deadline).
BUSY = (("tagger-retry-after-ms", "50"),)


class Lane(futures.ThreadPoolExecutor):
    """A thread pool for one kind of RPC that counts the RPCs submitted and not yet finished.

    ``limit`` (0 = none) is how many may be in the lane at once; :class:`AdmissionInterceptor`
    refuses the next one. Only gRPC's polling thread submits, so the check and the submit cannot race
    with another submit.
    """

    def __init__(self, name: str, threads: int, limit: int = 0) -> None:
        super().__init__(max_workers=threads, thread_name_prefix=f"tagger-{name}")
        self.name = name
        self.threads = threads
        self.limit = limit
        self._in_flight = 0
        self._count_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        with self._count_lock:
            self._in_flight += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _future: object) -> None:
        with self._count_lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def full(self) -> bool:
        return 0 < self.limit <= self._in_flight


class DocumentBudget:
    """Documents being tagged at once; ``take`` fails instead of waiting when they would exceed ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.in_use = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.in_use + n > self.limit and self.in_use:  # alone, any batch may run (n <= --max-batch)
                return False
            self.in_use += n
            return True

    def give_back(self, n: int) -> None:
        with self._lock:
            self.in_use -= n


def rejecting_handler(code: grpc.StatusCode, message: str, pool: futures.ThreadPoolExecutor,
                      trailing: tuple[tuple[str, str], ...] = ()) -> grpc.RpcMethodHandler:
    """A handler that answers ``code`` (with ``trailing`` metadata) on ``pool`` without reading the request
    (whatever the RPC's arity: a request-streaming handler is never made to read its first message)."""
    def reject(_requests: Any, context: grpc.ServicerContext) -> Any:
        if trailing:
            context.set_trailing_metadata(trailing)
        context.abort(code, message)

    reject.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return grpc.stream_unary_rpc_method_handler(reject)


def _pool_of(handler: grpc.RpcMethodHandler) -> Any:
    behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    return getattr(behavior, "experimental_thread_pool", None)


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Refuses an RPC whose lane is full, with RESOURCE_EXHAUSTED, before it is queued.

    ``default`` is the server's own pool (handlers without a lane of their own run there);
    ``on_refused(method, code)`` is told of every refusal (for metrics).
    """

    def __init__(self, default: Lane, reject_pool: futures.ThreadPoolExecutor,
                 on_refused: Callable[[str, grpc.StatusCode], None], hints: Mapping[str, str]) -> None:
        self.default = default
        self.reject_pool = reject_pool
        self.on_refused = on_refused
        self.hints = hints  # lane name -> the setting that sizes it, for the refusal message
        self._refusals: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        lane = _pool_of(handler) or self.default
        if not isinstance(lane, Lane) or not lane.full():
            return handler
        self.on_refused(details.method, grpc.StatusCode.RESOURCE_EXHAUSTED)
        refusal = self._refusals.get(lane.name)
        if refusal is None:
            refusal = self._refusals[lane.name] = rejecting_handler(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this server worker is busy: {lane.limit} {lane.name} calls are already waiting or running "
                f"({self.hints.get(lane.name, 'its limit')}); retry with backoff",
                self.reject_pool, BUSY)
        return refusal


def _malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim(0), or a no-op where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class BigRequests:
    """Counts requests over ``threshold`` bytes in flight; when the last one ends, returns free heap memory
    to the OS (malloc_trim walks the heap, a few ms: worth it only after big requests)."""

    def __init__(self, threshold: int, release: Callable[[], None] | None = None) -> None:
        self.threshold = threshold
        self._release = release or _malloc_trim()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.releases = 0

    def start(self, size: int) -> bool:
        """Note a request of ``size`` bytes; True if it is big (then call :meth:`end` when it is answered)."""
        if size < self.threshold:
            return False
        with self._lock:
            self._in_flight += 1
        return True

    def end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            last = self._in_flight == 0
        if last:
            self._release()
            self.releases += 1
