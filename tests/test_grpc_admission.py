"""Admission by work, not RPC count (issue 15, defect 2): a worker saturated by big TagBatch calls
sheds the excess at once with RESOURCE_EXHAUSTED and still answers health checks and one-document
Tag calls within a second. A real `tagger serve --workers 1` subprocess, default settings."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serve_process import ServeProcess
from tagger._proto import tagger_pb2 as pb
from tagger._proto import tagger_pb2_grpc as pb_grpc
from tagger.config import ConfigError, ServeConfig
from tagger.server_admission import DocumentBudget, Lane

TEXT = "قال وزير الخارجية إن المحادثات مع الوفد الأمريكي حول العقوبات والتعاون العسكري مستمرة. " * 20  # ~1,700 chars
# Every topic chosen and explained with 100 n-grams: ~0.2 s of tagging per 1,000-document batch.
HEAVY = pb.TagOptions(threshold=0.0, explain=True, explain_n=100)


def test_big_batches_are_shed_while_health_and_tag_answer_within_a_second() -> None:
    batch = pb.TagBatchRequest(documents=[pb.Document(id=str(i), text=TEXT) for i in range(1000)], options=HEAVY)
    with ServeProcess("--port", "0", "--workers", "1", "--metrics-port", "0", "--reload-interval", "0") as server, \
            grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 << 20),
                                                          ("grpc.max_receive_message_length", 64 << 20)]) as ch:
        # Probes and small calls use their own connection, as a kubelet or another client would: the batches'
        # 136 MB would otherwise queue ahead of them in the client's own HTTP/2 connection.
        probe_channel = grpc.insecure_channel(server.target)
        stub = pb_grpc.TopicTaggerStub(probe_channel)
        health = health_pb2_grpc.HealthStub(probe_channel)
        assert stub.Tag(pb.TagRequest(document=pb.Document(text=TEXT)), timeout=30).topics  # warm
        sent = time.monotonic()
        batches = pb_grpc.TopicTaggerStub(ch)
        calls = [batches.TagBatch.future(batch, timeout=60) for _ in range(40)]  # ~8 s of work if all were run
        answered_at: dict[int, float] = {}
        for i, call in enumerate(calls):
            call.add_done_callback(lambda _f, i=i: answered_at.setdefault(i, time.monotonic()))
        time.sleep(0.5)  # the batches have arrived and are being tagged or refused
        probes: list[tuple[str, float]] = []
        for _ in range(6):
            t0 = time.monotonic()
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
            probes.append(("health", time.monotonic() - t0))
            assert status == health_pb2.HealthCheckResponse.SERVING
            t0 = time.monotonic()
            assert stub.Tag(pb.TagRequest(document=pb.Document(text=TEXT)), timeout=1.0).topics
            probes.append(("Tag", time.monotonic() - t0))
            time.sleep(0.2)
        assert max(s for _, s in probes) < 1.0, probes  # deadlines of 1 s would have failed otherwise
        codes = [c.code() for c in calls]  # waits for each
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        refused = [i for i, c in enumerate(codes) if c is grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert refused and codes.count(grpc.StatusCode.OK) >= 1, codes
        # Shed quickly: refusals come back well before the ~8 s all the work would take if it were queued (the
        # previous server refused none: every batch waited its turn). The time includes sending 136 MB.
        refusal_times = sorted(answered_at[i] - sent for i in refused)
        assert refusal_times[len(refusal_times) // 2] < 3.0, refusal_times
        probe_channel.close()
        details = calls[refused[0]].exception().details()
        assert "busy" in details and "retry" in details, details


def test_document_budget_refuses_instead_of_waiting() -> None:
    budget = DocumentBudget(1000)
    assert budget.take(600) and not budget.take(600)  # would go over: refused at once
    assert budget.take(400) and budget.in_use == 1000
    budget.give_back(600)
    budget.give_back(400)
    assert budget.take(1000) and not budget.take(1)
    budget.give_back(1000)
    assert budget.take(1500)  # alone, a batch over the budget still runs (it is within --max-batch)
    budget.give_back(1500)
    assert budget.in_use == 0


def test_a_lane_counts_calls_until_they_finish() -> None:
    lane = Lane("t", 1, limit=2)
    release = threading.Event()
    first = lane.submit(release.wait, 10)
    second = lane.submit(lambda: None)  # waits for the one thread
    assert lane.in_flight == 2 and lane.full()
    release.set()
    first.result(10)
    second.result(10)
    for _ in range(100):
        if lane.in_flight == 0:
            break
        time.sleep(0.01)
    assert lane.in_flight == 0 and not lane.full()
    lane.shutdown()


@pytest.mark.parametrize(("changes", "needle"), [
    ({"max_batch": 100, "max_inflight_documents": 50}, "--max-inflight-documents"),
    ({"tls_cert": Path("c.pem")}, "--tls-key"),
    ({"tls_client_ca": Path("ca.pem")}, "--tls-client-ca"),
    ({"port": 5000, "health_port": 5000}, "--health-port"),
    ({"max_connection_age": -1.0}, "--max-connection-age"),
])
def test_admission_and_security_settings_are_checked(changes: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ServeConfig(**changes).validate()
    defaults = ServeConfig(threads=16, max_batch=1000)
    assert (defaults.batch_thread_count, defaults.inflight_document_limit) == (4, 2000)


def test_the_client_retries_a_busy_refusal_but_not_an_oversized_message(loaded) -> None:
    """RESOURCE_EXHAUSTED means two things: 'busy, retry' (marked with tagger-retry-after-ms) and
    'too big' (gRPC's own message limit). tagger.client retries only the first, within its deadline."""
    from tagger.client import TaggerClient
    from tagger.server import make_holder, running

    cfg = ServeConfig(host="127.0.0.1", port=0, workers=1, threads=4, metrics_port=0, reload_interval=0, grace=1,
                      max_batch=10, max_inflight_documents=10, max_message_mb=0.05)
    with running(cfg, make_holder(cfg, loaded)) as srv:
        budget = srv.servicer.budget
        assert budget.take(10)  # the worker is "busy": every document of its budget is taken
        threading.Timer(0.5, budget.give_back, args=(10,)).start()
        with TaggerClient(f"127.0.0.1:{srv.port}", timeout=20) as client:
            t0 = time.monotonic()
            results = client.tag_batch([{"id": str(i), "text": "خبر"} for i in range(3)])
            assert [r.id for r in results] == ["0", "1", "2"] and time.monotonic() - t0 >= 0.4
            refused = srv.metrics.registry.get_sample_value(
                "tagger_grpc_requests_total", {"method": "TagBatch", "code": "RESOURCE_EXHAUSTED"})
            assert refused and refused >= 2  # refused while busy, retried, then answered
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                client.tag({"text": "ا" * 60_000})  # over the 0.05 MB message limit
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() - t0 < 5
