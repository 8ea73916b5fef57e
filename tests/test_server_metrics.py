"""ServerMetrics tallies per-RPC metrics in memory and flushes them: what a scrape shows must equal what
prometheus-client's own per-call updates would have shown."""
from __future__ import annotations

import random
import threading

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tagger.server_metrics import LATENCY_BUCKETS, ServerMetrics

METHODS = ("Tag", "TagBatch")


def _lines(registry: CollectorRegistry, prefix: str) -> list[str]:
    return sorted(line for line in generate_latest(registry).decode().splitlines()
                  if line.startswith(prefix) and "_created" not in line)


def test_a_scrape_shows_exactly_what_per_call_updates_would_show() -> None:
    metrics = ServerMetrics(METHODS)
    reference = CollectorRegistry()
    requests = Counter("tagger_grpc_requests", "", ["method", "code"], registry=reference)
    latency = Histogram("tagger_grpc_request_duration_seconds", "", ["method"], buckets=LATENCY_BUCKETS,
                        registry=reference)
    documents = Counter("tagger_documents_tagged", "", ["method"], registry=reference)
    for method in METHODS:  # ServerMetrics makes each method's children up front
        latency.labels(method)
        documents.labels(method)
    rng = random.Random(7)
    codes = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED)
    # Bucket bounds themselves (an observation equal to a bound falls in that bucket), and beyond the last.
    seconds = [*LATENCY_BUCKETS, 0.0, 45.0] + [rng.lognormvariate(-6, 2) for _ in range(3000)]

    def call(i: int, s: float) -> None:
        method, code, docs = METHODS[i % 2], codes[i % 3], (i % 5) * (i % 2)
        metrics.started()
        metrics.finished(method, code, s, docs)
        requests.labels(method, code.name).inc()
        latency.labels(method).observe(s)
        if docs:
            documents.labels(method).inc(docs)

    threads = [threading.Thread(target=lambda k=k: [call(i, s) for i, s in enumerate(seconds) if i % 4 == k])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for prefix in ("tagger_grpc_requests_total", "tagger_grpc_request_duration_seconds", "tagger_documents_tagged"):
        got, want = _lines(metrics.registry, prefix), _lines(reference, prefix)
        assert got and got == want, prefix
    assert metrics.registry.get_sample_value("tagger_grpc_inflight_requests") == 0


def test_in_flight_calls_and_the_flushing_thread() -> None:
    metrics = ServerMetrics(METHODS)
    metrics.FLUSH_SECONDS = 0.02
    metrics.start_flushing()
    try:
        for _ in range(3):
            metrics.started()
        metrics.finished("Tag", grpc.StatusCode.OK, 0.001, 1)
        # Read the metric objects themselves (no collection, which would flush): the thread applied the tally.
        child = metrics.requests.labels("Tag", "OK")
        for _ in range(500):
            if child._value.get() == 1 and metrics.inflight._value.get() == 2:
                break
            threading.Event().wait(0.01)
        assert child._value.get() == 1
        assert metrics.inflight._value.get() == 2
        metrics.finished("Tag", grpc.StatusCode.OK, 0.001, 1)
        metrics.finished("Tag", grpc.StatusCode.OK, 0.001, 1)
    finally:
        metrics.stop_flushing()  # flushes what is left
    assert metrics.requests.labels("Tag", "OK")._value.get() == 3
    assert metrics.inflight._value.get() == 0
    assert metrics.documents.labels("Tag")._value.get() == 3
