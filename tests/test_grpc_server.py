"""Integration tests: a real gRPC server on 127.0.0.1 (OS-assigned port), every RPC, health,
reflection, metrics and every error case, with status codes and messages that name the problem."""
from __future__ import annotations

import json
import queue
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tagger._proto import tagger_pb2 as pb
from tagger._proto import tagger_pb2_grpc as pb_grpc
from tagger.artifacts import LoadedModel
from tagger.client import TaggerClient
from tagger.config import ServeConfig
from tagger.document import parse_page
from tagger.server import SERVICE_NAME, TaggerServer, make_holder, running
from tagger.tagger import Tagger, TagOptions

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MISSION = {"diplomacy", "military", "sanctions"}
LONG_TEXT = "قال وزير الخارجية إن المحادثات مستمرة. " * 150  # ~6,000 characters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config(**changes: object) -> ServeConfig:
    base = ServeConfig(host="127.0.0.1", port=0, workers=1, threads=8, metrics_port=0, reload_interval=0, grace=1)
    return base.with_overrides(**changes)


test_config.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def seed(shared_dir: Path) -> str:
    return (shared_dir / "examples" / "seed-article.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def server(loaded: LoadedModel) -> Iterator[TaggerServer]:
    """Lenient limits: truncates over 5,000 characters, 20 documents per batch, 1 MB messages."""
    cfg = test_config(metrics_port=free_port(), max_batch=20, max_chars=5000, max_message_mb=1)
    with running(cfg, make_holder(cfg, loaded)) as srv:
        yield srv


@pytest.fixture(scope="module")
def strict(loaded: LoadedModel) -> Iterator[TaggerServer]:
    """Rejects over 2,000 characters, 2 concurrent RPCs, no reflection."""
    cfg = test_config(on_too_long="reject", max_chars=2000, max_concurrent_rpcs=2, max_streams=2, reflection=False)
    with running(cfg, make_holder(cfg, loaded)) as srv:
        yield srv


@pytest.fixture(scope="module")
def channel(server: TaggerServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.TopicTaggerStub:
    return pb_grpc.TopicTaggerStub(channel)


@pytest.fixture(scope="module")
def client(server: TaggerServer) -> Iterator[TaggerClient]:
    with TaggerClient(f"127.0.0.1:{server.port}", timeout=20) as c:
        yield c


def status_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, **kwargs)
        if isinstance(result, Iterator):
            list(result)
    return info.value.code(), info.value.details()


# ------------------------------------------------------------------ the RPCs
def test_seed_article_is_diplomacy_military_sanctions(client: TaggerClient, seed: str, loaded: LoadedModel) -> None:
    result = client.tag({"id": "seed", "raw": seed}, include_scores=True)
    assert result.id == "seed"
    assert {t.topic for t in result.topics} == MISSION
    assert [t.score for t in result.topics] == sorted((t.score for t in result.topics), reverse=True)
    assert result.model_version == loaded.version
    assert "روسيا" in result.dropped_tags  # the page's own tag line is reported, not used
    local = Tagger(loaded).tag(parse_page(seed, "seed"))
    assert list(result.scores) == list(loaded.model.topics)
    assert result.scores == pytest.approx(local.scores, abs=1e-6)  # float32 on the wire


def test_tag_options(client: TaggerClient, seed: str) -> None:
    explained = client.tag({"raw": seed}, TagOptions(explain=True, explain_n=3))
    assert all(0 < len(t.evidence) <= 3 for t in explained.topics)
    assert explained.topics[0].evidence[0].weight > 0
    assert [t.topic for t in client.tag({"raw": seed}, TagOptions(top_k=1)).topics] == ["diplomacy"]
    assert [t.topic for t in client.tag({"raw": seed}, TagOptions(topics=("military",))).topics] == ["military"]
    assert [t.topic for t in client.tag({"raw": seed}, TagOptions(threshold=0.99)).topics] == ["diplomacy"]
    assert client.tag({"raw": seed}).scores == {}  # scores only on request
    titled = client.tag({"title": "العقوبات على كوريا الشمالية", "text": "فرضت الولايات المتحدة عقوبات جديدة.",
                         "tags": ["x"]})
    assert "sanctions" in {t.topic for t in titled.topics} and titled.dropped_tags == ("x",)


def test_tag_batch_keeps_order(client: TaggerClient, stub: pb_grpc.TopicTaggerStub, seed: str) -> None:
    docs = [{"id": f"d{i}", "raw": seed} if i % 2 else {"id": f"d{i}", "text": "مباراة كرة القدم انتهت بفوز الفريق"}
            for i in range(7)]
    results = client.tag_batch(docs)
    assert [r.id for r in results] == [d["id"] for d in docs]
    assert {t.topic for t in results[1].topics} == MISSION
    assert stub.TagBatch(pb.TagBatchRequest()).results == []
    # Longer than the server's 20 per batch: the client splits by the limit it reads from GetModelInfo.
    many = client.tag_batch([{"id": str(i), "text": "خبر عن الاقتصاد والتجارة"} for i in range(45)])
    assert [r.id for r in many] == [str(i) for i in range(45)]


def test_tag_stream_answers_each_request_in_order(client: TaggerClient, stub: pb_grpc.TopicTaggerStub,
                                                   seed: str) -> None:
    docs = [{"id": f"s{i}", "raw": seed} for i in range(10)]
    assert [r.id for r in client.tag_stream(docs)] == [d["id"] for d in docs]
    requests = [pb.TagRequest(document=pb.Document(id=str(i), raw=seed), options=pb.TagOptions(top_k=i % 3))
                for i in range(3)]
    assert [len(r.topics) for r in stub.TagStream(iter(requests))] == [0, 1, 2]


def test_list_topics(stub: pb_grpc.TopicTaggerStub, loaded: LoadedModel) -> None:
    response = stub.ListTopics(pb.ListTopicsRequest())
    assert [t.id for t in response.topics] == list(loaded.model.topics)
    assert response.model_version == loaded.version
    diplomacy = response.topics[0]
    assert (diplomacy.en, diplomacy.ar) == ("Diplomacy", "دبلوماسية")
    assert diplomacy.threshold == pytest.approx(loaded.manifest["thresholds"]["diplomacy"])
    assert all(t.ar and t.en for t in response.topics)


def test_get_model_info_is_the_manifest(stub: pb_grpc.TopicTaggerStub, loaded: LoadedModel) -> None:
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    m = loaded.manifest
    assert info.version == loaded.version and info.name == m["name"]
    assert list(info.topics) == m["topics"]
    assert dict(info.thresholds) == pytest.approx(m["thresholds"])
    assert info.library_versions["scikit-learn"] == m["versions"]["scikit-learn"]
    assert info.model_sha256 == m["sha256"]
    hashes = {d.role: d.sha256 for d in info.data}
    assert hashes["training_data.corpus"] == m["training_data"]["corpus"]["sha256"]
    assert info.metrics["dev.micro_f1"] == pytest.approx(m["metrics"]["dev"]["micro_f1"])
    military = m["metrics"]["dev"]["per_topic"]["military"]
    assert info.metrics["dev.per_topic.military.f1"] == pytest.approx(military["f1"])
    assert json.loads(info.manifest_json) == m
    assert (info.limits.max_batch_documents, info.limits.max_chars, info.limits.truncates_long_text) == (20, 5000, True)
    assert info.limits.max_message_bytes == 1024 * 1024


# ------------------------------------------------------------------ health and reflection
def test_health_overall_and_per_service(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    code, _ = status_of(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_health_not_serving_until_ready_and_again_when_stopping(loaded: LoadedModel) -> None:
    cfg = test_config()
    server = TaggerServer(cfg, make_holder(cfg, loaded))
    port = server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)

            def check(service: str) -> int:
                return health.Check(health_pb2.HealthCheckRequest(service=service)).status

            assert check("") == check(SERVICE_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING
            server.ready()
            assert check("") == check(SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
            watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stopper = threading.Thread(target=server.stop, args=(2,))
            stopper.start()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            stopper.join()
    finally:
        server.stop(0)


def test_reflection_describes_the_services(channel: grpc.Channel) -> None:
    db = ProtoReflectionDescriptorDatabase(channel)
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= set(db.get_services())
    service = DescriptorPool(db).FindServiceByName(SERVICE_NAME)
    assert {m.name for m in service.methods} == {"Tag", "TagBatch", "TagStream", "ListTopics", "GetModelInfo"}


def test_no_reflection(strict: TaggerServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{strict.port}") as ch:
        code, _ = status_of(ProtoReflectionDescriptorDatabase(ch).get_services)
    assert code == grpc.StatusCode.UNIMPLEMENTED


# ------------------------------------------------------------------ errors
def tag_request(**document: object) -> pb.TagRequest:
    return pb.TagRequest(document=pb.Document(**document))


@pytest.mark.parametrize(("request_", "needle"), [
    (tag_request(id="e"), "no text to tag"),
    (tag_request(id="w", title="  ", text="\n\t "), "no text to tag"),
    (tag_request(raw="عنوان\nنص", text="نص"), "both 'raw' and 'text'"),
    (pb.TagRequest(document=pb.Document(text="خبر"), options=pb.TagOptions(topics=["military", "weather"])),
     "'weather'"),
    (pb.TagRequest(document=pb.Document(text="خبر"), options=pb.TagOptions(threshold=1.5)), "threshold"),
    (pb.TagRequest(document=pb.Document(text="خبر"), options=pb.TagOptions(explain_n=500)), "explain_n"),
])
def test_tag_invalid_argument(stub: pb_grpc.TopicTaggerStub, request_: pb.TagRequest, needle: str) -> None:
    code, details = status_of(stub.Tag, request_)
    assert code == INVALID
    assert needle in details


def test_batch_and_stream_errors_name_the_position(stub: pb_grpc.TopicTaggerStub) -> None:
    docs = [pb.Document(id="a", text="خبر"), pb.Document(id="b", text="خبر"), pb.Document(id="c")]
    code, details = status_of(stub.TagBatch, pb.TagBatchRequest(documents=docs))
    assert code == INVALID and details.startswith("documents[2]: ") and "'c'" in details
    code, details = status_of(stub.TagStream, iter([pb.TagRequest(document=d) for d in docs]))
    assert code == INVALID and details.startswith("stream message 2: ")
    code, details = status_of(stub.TagBatch, pb.TagBatchRequest(documents=[pb.Document(text="خبر")] * 21))
    assert code == INVALID and "21 documents" in details and "limit of 20" in details


def with_invalid_utf8(message: object) -> bytes:
    """``message`` serialized, with its one "@@" replaced by two bytes that are not UTF-8."""
    data = message.SerializeToString()  # type: ignore[attr-defined]
    assert data.count(b"@@") == 1
    return data.replace(b"@@", b"\xff\xfe")


def test_invalid_utf8_is_invalid_argument_naming_the_field(channel: grpc.Channel) -> None:
    def raw_call(method: str, kind: str = "unary_unary"):  # sends bytes as they are
        return getattr(channel, kind)(f"/{SERVICE_NAME}/{method}", request_serializer=None,
                                      response_deserializer=None)

    code, details = status_of(raw_call("Tag"), with_invalid_utf8(tag_request(id="u", text="abc @@ def")))
    assert code == INVALID and details.startswith("document.text at byte 4 is not valid UTF-8")
    batch = pb.TagBatchRequest(documents=[pb.Document(text="ok"), pb.Document(title="@@", text="ok")])
    code, details = status_of(raw_call("TagBatch"), with_invalid_utf8(batch))
    assert code == INVALID and details.startswith("documents[1].title ")
    stream = iter([pb.TagRequest(document=pb.Document(text="ok")).SerializeToString(),
                   with_invalid_utf8(tag_request(tags=["a", "@@"]))])
    code, details = status_of(raw_call("TagStream", "stream_stream"), stream)
    assert code == INVALID and details.startswith("stream message 1: document.tags[1] ")


def test_too_long_text_is_truncated_and_flagged(client: TaggerClient) -> None:
    result = client.tag({"text": LONG_TEXT})
    assert result.truncated
    assert not client.tag({"text": LONG_TEXT[:4000]}).truncated


def test_too_long_text_is_rejected_under_reject_policy(strict: TaggerServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{strict.port}") as ch:
        code, details = status_of(pb_grpc.TopicTaggerStub(ch).Tag, tag_request(id="long", text=LONG_TEXT))
    assert code == INVALID and "over the limit of 2000" in details


def test_message_over_the_size_limit_is_resource_exhausted(stub: pb_grpc.TopicTaggerStub) -> None:
    code, _ = status_of(stub.Tag, tag_request(text="ا" * 600_000))  # 1.2 MB of UTF-8 > 1 MB limit
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


class OpenStream:
    """A TagStream kept open (an active RPC) after one answered request."""

    def __init__(self, stub: pb_grpc.TopicTaggerStub) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.requests.put(tag_request(text="خبر"))
        self.responses = stub.TagStream(iter(self.requests.get, None))
        next(self.responses)

    def close(self) -> None:
        self.requests.put(None)
        list(self.responses)


def test_too_many_concurrent_rpcs_is_resource_exhausted(strict: TaggerServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{strict.port}") as ch:
        stub = pb_grpc.TopicTaggerStub(ch)
        streams = [OpenStream(stub), OpenStream(stub)]  # the server's limit is 2
        try:
            code, _ = status_of(stub.Tag, tag_request(text="خبر"))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            for s in streams:
                s.close()
        assert stub.Tag(tag_request(text="خبر")).model_version  # capacity is back


def test_idle_streams_cannot_starve_other_calls_and_are_reaped(loaded: LoadedModel) -> None:
    """An open stream holds an RPC thread even while idle. With 4 threads, 2 streams may be open: a third
    is refused at once, Tag and health checks still answer, and a stream idle past the timeout is
    cancelled, which frees its slot."""
    cfg = test_config(threads=4, stream_idle_timeout=1.0)
    assert cfg.stream_limit == 2
    with running(cfg, make_holder(cfg, loaded)) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub = pb_grpc.TopicTaggerStub(ch)
        streams = [OpenStream(stub), OpenStream(stub)]
        code, details = status_of(stub.TagStream, iter([tag_request(text="خبر")]), timeout=10)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-streams" in details
        assert stub.Tag(tag_request(text="خبر"), timeout=10).model_version
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        # Both streams idle: the reaper cancels them (the client sees CANCELLED) and the slots come back.
        for st in streams:
            with pytest.raises(grpc.RpcError) as info:
                list(st.responses)
            assert info.value.code() == grpc.StatusCode.CANCELLED
        for _ in range(100):
            if not len(srv.servicer.streams):
                break
            time.sleep(0.05)
        assert len(srv.servicer.streams) == 0
        assert [r.id for r in stub.TagStream(iter([tag_request(id="again", text="خبر")]), timeout=10)] == ["again"]


def test_shutdown_is_not_held_by_an_idle_stream(loaded: LoadedModel) -> None:
    cfg = test_config(grace=60)
    srv = TaggerServer(cfg, make_holder(cfg, loaded), serve_metrics=False)
    srv.start()
    srv.ready()
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        idle = OpenStream(pb_grpc.TopicTaggerStub(ch))
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 30  # not the 60 s grace: the idle stream was cancelled
        with pytest.raises(grpc.RpcError) as info:
            list(idle.responses)
        # Either way the client knows to resend what was not answered (tagger.client does).
        assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


def test_deadline_is_respected_and_the_server_stops_working(strict: TaggerServer) -> None:
    docs = [pb.Document(id=str(i), text=LONG_TEXT[:1900]) for i in range(1000)]
    # Every topic chosen and explained with 100 n-grams: ~0.22 s of work here, 4x the deadline; plain
    # tagging of the batch takes ~0.07 s, about the deadline itself, so it could finish first.
    heavy = pb.TagOptions(threshold=0.0, explain=True, explain_n=100)
    with grpc.insecure_channel(f"127.0.0.1:{strict.port}") as ch:
        code, _ = status_of(pb_grpc.TopicTaggerStub(ch).TagBatch, pb.TagBatchRequest(documents=docs, options=heavy),
                            timeout=0.05)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    # The handler notices between chunks and records it, instead of tagging the rest for nobody.
    labels = {"method": "TagBatch", "code": "DEADLINE_EXCEEDED"}
    for _ in range(200):
        if strict.metrics.registry.get_sample_value("tagger_grpc_requests_total", labels):
            break
        time.sleep(0.05)
    assert strict.metrics.registry.get_sample_value("tagger_grpc_requests_total", labels) == 1
    tagged = strict.metrics.registry.get_sample_value("tagger_documents_tagged_total", {"method": "TagBatch"})
    assert not tagged


# ------------------------------------------------------------------ metrics
def test_prometheus_metrics(
    server: TaggerServer, client: TaggerClient, stub: pb_grpc.TopicTaggerStub, loaded: LoadedModel
) -> None:
    client.tag({"text": "خبر عن الاقتصاد"})
    client.tag_batch([{"text": "خبر"}] * 3)
    status_of(stub.Tag, tag_request(id="empty"))
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for needle in (
        'tagger_grpc_requests_total{code="OK",method="Tag"}',
        'tagger_grpc_requests_total{code="INVALID_ARGUMENT",method="Tag"}',
        'tagger_grpc_request_duration_seconds_bucket{le="0.005",method="Tag"}',
        'tagger_documents_tagged_total{method="TagBatch"}',
        'tagger_batch_documents_bucket{le="5.0"}',
        f'tagger_model_info{{version="{loaded.version}"}} 1.0',
        "tagger_grpc_inflight_requests",
        "tagger_documents_truncated_total",
    ):
        assert needle in text, needle
