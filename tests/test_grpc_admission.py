"""Admission by work, not RPC count (issue 15, defect 2): a worker saturated by big TagBatch calls
sheds the excess at once with RESOURCE_EXHAUSTED and still answers health checks and one-document
Tag calls within a second. A real `tagger serve --workers 1` subprocess, default settings."""
from __future__ import annotations

import time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serve_process import ServeProcess
from tagger._proto import tagger_pb2 as pb
from tagger._proto import tagger_pb2_grpc as pb_grpc

TEXT = "قال وزير الخارجية إن المحادثات مع الوفد الأمريكي حول العقوبات والتعاون العسكري مستمرة. " * 20  # ~1,700 chars
# Every topic chosen and explained with 100 n-grams: ~0.2 s of tagging per 1,000-document batch.
HEAVY = pb.TagOptions(threshold=0.0, explain=True, explain_n=100)


def test_big_batches_are_shed_while_health_and_tag_answer_within_a_second() -> None:
    batch = pb.TagBatchRequest(documents=[pb.Document(id=str(i), text=TEXT) for i in range(1000)], options=HEAVY)
    with ServeProcess("--port", "0", "--workers", "1", "--metrics-port", "0", "--reload-interval", "0") as server, \
            grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 << 20),
                                                          ("grpc.max_receive_message_length", 64 << 20)]) as ch:
        stub = pb_grpc.TopicTaggerStub(ch)
        health = health_pb2_grpc.HealthStub(ch)
        assert stub.Tag(pb.TagRequest(document=pb.Document(text=TEXT)), timeout=30).topics  # warm
        sent = time.monotonic()
        calls = [stub.TagBatch.future(batch, timeout=60) for _ in range(40)]  # ~8 s of work if all were run
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
        # Shed quickly: refusals come back in well under the time the admitted work takes, not after queueing.
        refusal_times = sorted(answered_at[i] - sent for i in refused)
        assert refusal_times[len(refusal_times) // 2] < 1.0, refusal_times
        details = calls[refused[0]].exception().details()
        assert "busy" in details and "retry" in details, details
