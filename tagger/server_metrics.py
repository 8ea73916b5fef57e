"""Prometheus metrics of the gRPC server, for one process or for several forked workers.

With ``--workers N > 1`` every worker writes its metrics to files in a shared folder
(prometheus-client's multiprocess mode) and worker 0 serves ``/metrics`` summed over all workers,
so a scrape sees the whole service whichever process answers.
"""
from __future__ import annotations

import bisect
import os
import socket
import threading
from collections.abc import Callable, Iterable

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client import values as _values

__all__ = ["ServerMetrics", "mark_process_dead", "multiprocess_enabled", "serve_metrics", "use_multiprocess_dir",
           "worker_restarts_counter"]

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Tag takes ~1 ms; batches and cold paths reach seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def use_multiprocess_dir(path: str) -> None:
    """Switch prometheus-client to multiprocess mode (call before forking workers and creating metrics).

    prometheus-client picks its value store when first imported, from the environment; this process
    imported it already, so the choice is made again here (the same call it makes at import).
    """
    os.environ[_MULTIPROC_ENV] = path
    _values.ValueClass = _values.get_value_class()


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(_MULTIPROC_ENV))


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay in the totals)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)


class _FlushFirst:
    """Registered first in a ServerMetrics registry: a collection (a scrape, ``get_sample_value``) first
    applies the calls tallied since the last flush, so a reader of this registry never sees them late."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def describe(self) -> list:
        return []

    def collect(self) -> list:
        self._flush()
        return []


class ServerMetrics:
    """The server's metrics in their own registry (several in-process servers must not collide).

    Per-RPC metrics (requests by code, latency, documents, RPCs in flight) are tallied in memory by
    :meth:`started` / :meth:`finished` and applied to the Prometheus metrics by :meth:`flush`: on every
    collection of this registry, every ``FLUSH_SECONDS`` while :meth:`start_flushing` runs (other
    workers' scrapes read what was flushed), and at :meth:`stop_flushing`. Updating prometheus-client's
    values on every call cost a Tag call more than scoring its document did: each update takes a lock
    and, with several workers, checks the process id and writes a memory-mapped file (six per call).
    """

    FLUSH_SECONDS = 0.25

    def __init__(self, methods: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(_FlushFirst(self.flush))
        self.requests = Counter("tagger_grpc_requests", "RPCs finished, by method and gRPC status code",
                                ["method", "code"], registry=r)
        self.latency = Histogram("tagger_grpc_request_duration_seconds", "RPC handling time in the server",
                                 ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("tagger_grpc_inflight_requests", "RPCs being handled now",
                              multiprocess_mode="livesum", registry=r)
        self.documents = Counter("tagger_documents_tagged", "Documents tagged, by method", ["method"], registry=r)
        self.truncated = Counter("tagger_documents_truncated", "Documents over max_chars whose start was scored",
                                 registry=r)
        self.batch_size = Histogram("tagger_batch_documents", "Documents per TagBatch request tagged",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.model_info = Gauge("tagger_model_info", "The model version being served (1) or served before (0)",
                                ["version"], multiprocess_mode="liveall", registry=r)
        self.reloads = Counter("tagger_model_reloads", "Model versions loaded in the background, by result",
                               ["result"], registry=r)
        # Children resolved once: labels() takes a lock and builds a key on every call.
        self._latency = {m: self.latency.labels(m) for m in methods}
        self._documents = {m: self.documents.labels(m) for m in methods}
        self._requests: dict[tuple[str, grpc.StatusCode], Counter] = {}
        # The tally since the last flush, under _tally_lock: calls by (method, code), documents by method,
        # latency by method as [count per bucket (+Inf last), sum]; and the RPCs in flight now.
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._tally_lock = threading.Lock()
        self._calls: dict[tuple[str, grpc.StatusCode], int] = {}
        self._docs: dict[str, int] = {}
        self._latencies: dict[str, list] = {}
        self._in_flight = 0
        self._flush_lock = threading.Lock()
        self._flushed_in_flight = 0
        self._stop_flushing = threading.Event()
        self._flusher: threading.Thread | None = None

    def started(self) -> None:
        """An RPC began (it counts as in flight until :meth:`finished`)."""
        with self._tally_lock:
            self._in_flight += 1

    def finished(self, method: str, code: grpc.StatusCode, seconds: float, documents: int = 0) -> None:
        """An RPC that :meth:`started` ended with ``code`` after ``seconds``, having tagged ``documents``."""
        bucket = bisect.bisect_left(self._bounds, seconds)  # the first bucket whose bound is >= seconds
        key = (method, code)
        with self._tally_lock:
            self._in_flight -= 1
            self._calls[key] = self._calls.get(key, 0) + 1
            latency = self._latencies.get(method)
            if latency is None:
                latency = self._latencies[method] = [[0] * len(self._bounds), 0.0]
            latency[0][bucket] += 1
            latency[1] += seconds
            if documents:
                self._docs[method] = self._docs.get(method, 0) + documents

    def flush(self) -> None:
        """Apply the tally to the Prometheus metrics."""
        with self._flush_lock:  # one flush at a time, so the in-flight gauge ends at the latest value
            with self._tally_lock:
                calls, docs, latencies, in_flight = self._calls, self._docs, self._latencies, self._in_flight
                self._calls, self._docs, self._latencies = {}, {}, {}
            for (method, code), n in calls.items():
                child = self._requests.get((method, code))
                if child is None:
                    child = self._requests[(method, code)] = self.requests.labels(method, code.name)
                child.inc(n)
            for method, n in docs.items():
                self._documents[method].inc(n)
            for method, (counts, total) in latencies.items():
                # Histogram.observe's own updates (prometheus-client keeps per-bucket counts and a sum), n at
                # a time; tests compare the exposition with observe()'s.
                child = self._latency[method]
                child._sum.inc(total)
                for i, n in enumerate(counts):
                    if n:
                        child._buckets[i].inc(n)
            if in_flight != self._flushed_in_flight:
                self.inflight.set(in_flight)
                self._flushed_in_flight = in_flight

    def start_flushing(self) -> None:
        """Flush every FLUSH_SECONDS in a daemon thread until :meth:`stop_flushing`."""
        if self._flusher is not None:
            return
        self._stop_flushing.clear()

        def run() -> None:
            while not self._stop_flushing.wait(self.FLUSH_SECONDS):
                self.flush()

        self._flusher = threading.Thread(target=run, name="tagger-metrics-flush", daemon=True)
        self._flusher.start()

    def stop_flushing(self) -> None:
        """Stop the flushing thread and flush what is left."""
        self._stop_flushing.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        self.flush()

    def refused(self, full_method: str, code: grpc.StatusCode) -> None:
        """An RPC refused before its handler ran (no token, lane full): counted, with no latency."""
        self.requests.labels(full_method.rsplit("/", 1)[-1], code.name).inc()

    def model_swapped(self, old: str | None, new: str) -> None:
        if old:
            self.model_info.labels(old).set(0)
        self.model_info.labels(new).set(1)

    def collector_registry(self) -> CollectorRegistry:
        """What /metrics serves: all workers' files in multiprocess mode, else this registry."""
        if not multiprocess_enabled():
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry


def worker_restarts_counter() -> Counter:
    """The supervisor's count of workers it replaced, by reason ("crash", or "exit 0" for a worker that
    stopped on its own, e.g. a SIGTERM sent to it alone). Call after :func:`use_multiprocess_dir`, so worker
    0's /metrics sums it with the workers' metrics."""
    return Counter("tagger_worker_restarts", "Worker processes that exited unasked and were replaced, by reason",
                   ["reason"], registry=CollectorRegistry())


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> tuple[object, threading.Thread]:
    """Start the /metrics HTTP server in a daemon thread; returns (server, thread)."""
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise _port_error(host, port, e) from e


def _port_error(host: str, port: int, e: OSError) -> OSError:
    shown = f"[{host}]" if ":" in host else host
    return OSError(f"cannot serve metrics on {shown}:{port} (--metrics-port): {e.strerror or e}")


def check_metrics_port(host: str, port: int) -> None:
    """Fail before any worker starts when the metrics port cannot be bound (say, already in use)."""
    if not port:
        return
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds it
            s.bind((host, port))
    except OSError as e:
        raise _port_error(host, port, e) from e
