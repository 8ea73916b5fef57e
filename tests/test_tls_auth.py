"""TLS, mutual TLS and bearer tokens against real servers on 127.0.0.1, with certificates made here
(a CA, a server certificate for 127.0.0.1/localhost, client certificates) by `cryptography`."""
from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from pki import Authority
from serve_process import ServeProcess
from tagger._proto import tagger_pb2 as pb
from tagger._proto import tagger_pb2_grpc as pb_grpc
from tagger.artifacts import LoadedModel
from tagger.cli import main as cli_main
from tagger.client import TaggerClient
from tagger.config import ServeConfig
from tagger.server import TaggerServer, make_holder, plaintext_warning, running

TOKEN = "s3cret-token-4f9a1c"  # what a log must never show
MISSION = {"diplomacy", "military", "sanctions"}
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@dataclass
class Certs:
    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    stranger: tuple[Path, Path]  # a client certificate from another CA


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = Authority(folder, "tagger-test-ca"), Authority(folder, "other-ca")
    return Certs(ca.pem, ca.issue("server", server=True), ca.issue("client", server=False),
                 other.issue("stranger", server=False))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"# rotated in May\nold-token-0000\n{TOKEN}\n", encoding="utf-8")
    return path


def config(**changes: object) -> ServeConfig:
    return ServeConfig(host="127.0.0.1", port=0, workers=1, threads=4, metrics_port=0, reload_interval=0,
                       grace=1).with_overrides(**changes)


@pytest.fixture(scope="module")
def mtls_server(loaded: LoadedModel, certs: Certs, token_file: Path) -> Iterator[TaggerServer]:
    cfg = config(tls_cert=certs.server[0], tls_key=certs.server[1], tls_client_ca=certs.ca, token_file=token_file)
    with running(cfg, make_holder(cfg, loaded)) as srv:
        yield srv


@pytest.fixture(scope="module")
def token_server(loaded: LoadedModel, token_file: Path) -> Iterator[TaggerServer]:
    cfg = config(token_file=token_file)
    with running(cfg, make_holder(cfg, loaded)) as srv:
        yield srv


def code_of(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code()


# ------------------------------------------------------------------ TLS
def test_tls_serves_a_client_that_trusts_the_ca_and_no_plaintext_client(loaded: LoadedModel, certs: Certs,
                                                                         seed: str) -> None:
    cfg = config(tls_cert=certs.server[0], tls_key=certs.server[1])
    with running(cfg, make_holder(cfg, loaded)) as srv:
        target = f"127.0.0.1:{srv.port}"
        for host in (target, f"localhost:{srv.port}"):  # both names are in the certificate
            with TaggerClient(host, tls_ca=certs.ca, timeout=20) as client:
                assert {t.topic for t in client.tag({"raw": seed}).topics} == MISSION
        with TaggerClient(target, timeout=3) as plain:
            with pytest.raises(ConnectionError, match="connection failed"):
                plain.check_connection(timeout=10)
        with TaggerClient(target, tls=True, timeout=3) as system_roots:  # the test CA is not a system CA
            assert code_of(system_roots.tag, {"text": "خبر"}, timeout=2) in (
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_mutual_tls_needs_a_client_certificate_from_the_ca(mtls_server: TaggerServer, certs: Certs) -> None:
    target = f"127.0.0.1:{mtls_server.port}"
    with TaggerClient(target, tls_ca=certs.ca, tls_cert=certs.client[0], tls_key=certs.client[1], token=TOKEN,
                      timeout=20) as client:
        assert client.tag({"text": "فرضت واشنطن عقوبات على موسكو"}).model_version
        assert client.health() == "SERVING"
    for cert in (None, certs.stranger):
        kwargs = {"tls_cert": cert[0], "tls_key": cert[1]} if cert else {}
        with TaggerClient(target, tls_ca=certs.ca, token=TOKEN, timeout=3, **kwargs) as refused:
            # The handshake fails, so not even a health check gets through.
            assert code_of(refused.health, timeout=2) in (grpc.StatusCode.UNAVAILABLE,
                                                          grpc.StatusCode.DEADLINE_EXCEEDED)


# ------------------------------------------------------------------ tokens
def test_tokens_gate_every_service_but_health(token_server: TaggerServer, seed: str) -> None:
    target = f"127.0.0.1:{token_server.port}"
    with TaggerClient(target, token=TOKEN, timeout=20) as client:
        assert {t.topic for t in client.tag({"raw": seed}).topics} == MISSION
        assert [r.id for r in client.tag_stream([{"id": "s", "text": "خبر"}])] == ["s"]
        assert client.model_info().version
    with TaggerClient(target, token="old-token-0000", timeout=20) as client:  # every line of the file counts
        assert client.tag({"text": "خبر"}).model_version
    with grpc.insecure_channel(target) as ch:
        stub = pb_grpc.TopicTaggerStub(ch)
        request = pb.TagRequest(document=pb.Document(text="خبر"))
        for metadata in (None, (("authorization", "Bearer wrong"),), (("authorization", TOKEN),),
                         (("authorization", f"Basic {TOKEN}"),), (("authorization", "Bearer "),)):
            assert code_of(stub.Tag, request, metadata=metadata, timeout=10) == UNAUTHENTICATED, metadata
        with pytest.raises(grpc.RpcError) as info:
            stub.Tag(request, timeout=10)
        assert "authorization: Bearer" in info.value.details() and TOKEN not in info.value.details()
        assert code_of(stub.TagBatch, pb.TagBatchRequest(documents=[request.document]), timeout=10) == UNAUTHENTICATED
        assert code_of(lambda: list(stub.TagStream(iter([request]), timeout=10))) == UNAUTHENTICATED
        assert code_of(stub.GetModelInfo, pb.GetModelInfoRequest(), timeout=10) == UNAUTHENTICATED
        assert code_of(stub.ListTopics, pb.ListTopicsRequest(), timeout=10) == UNAUTHENTICATED
        assert code_of(ProtoReflectionDescriptorDatabase(ch).get_services) == UNAUTHENTICATED
        # Probes carry no secret: health answers without a token.
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    refused = token_server.metrics.registry.get_sample_value(
        "tagger_grpc_requests_total", {"method": "Tag", "code": "UNAUTHENTICATED"})
    assert refused and refused >= 6


def test_cli_tag_server_with_tls_and_token(mtls_server: TaggerServer, certs: Certs, token_file: Path,
                                           tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seed = str(shared_dir / "examples" / "seed-article.txt")
    mine = tmp_path / "token"
    mine.write_text(TOKEN + "\n", encoding="utf-8")
    tls = ["--tls-ca", str(certs.ca), "--tls-cert", str(certs.client[0]), "--tls-key", str(certs.client[1])]
    target = f"127.0.0.1:{mtls_server.port}"
    assert cli_main(["tag", "--server", target, *tls, "--token-file", str(mine), seed]) == 0
    assert "diplomacy" in capsys.readouterr().out
    monkeypatch.setenv("TAGGER_TOKEN", TOKEN)
    assert cli_main(["tag", "--server", target, *tls, seed]) == 0
    assert "diplomacy" in capsys.readouterr().out
    monkeypatch.delenv("TAGGER_TOKEN")
    assert cli_main(["tag", "--server", target, *tls, "--timeout", "5", seed]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "UNAUTHENTICATED" in err, err


# ------------------------------------------------------------------ a real `tagger serve` and its log
def test_serve_with_tls_and_tokens_never_logs_a_token(certs: Certs, token_file: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    with ServeProcess("--port", "0", "--workers", "2", "--metrics-port", str(metrics_port), "--log-level", "DEBUG",
                      "--tls-cert", str(certs.server[0]), "--tls-key", str(certs.server[1]),
                      "--token-file", str(token_file)) as server:
        with TaggerClient(server.target, tls_ca=certs.ca, token=TOKEN, timeout=20, connections=2) as client:
            assert client.tag_batch([{"id": str(i), "text": "خبر"} for i in range(4)])
        with TaggerClient(server.target, tls_ca=certs.ca, token=TOKEN + "x", timeout=5) as wrong:
            assert code_of(wrong.tag, {"text": "خبر"}) == UNAUTHENTICATED
        # The metrics endpoint listens where gRPC does (127.0.0.1 here), not on every interface.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            assert "UNAUTHENTICATED" in response.read().decode()
        assert server.terminate() == 0
    log = "".join(server.log)
    assert "ready:" in log and ", TLS, token auth on" in log, log
    assert TOKEN not in log and "old-token-0000" not in log, log


def test_metrics_listen_on_the_grpc_host_unless_told(loaded: LoadedModel) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(metrics_port=port)
    assert cfg.metrics_address == "127.0.0.1"
    with running(cfg, make_holder(cfg, loaded)) as srv:
        assert srv._metrics_http.server_address[0] == "127.0.0.1"
    assert ServeConfig(host="[::]").metrics_address == "::"
    assert ServeConfig(host="127.0.0.1", metrics_host="0.0.0.0").metrics_address == "0.0.0.0"


def test_plaintext_on_a_non_loopback_host_is_warned_about(certs: Certs) -> None:
    assert plaintext_warning(ServeConfig(host="127.0.0.1")) is None
    assert plaintext_warning(ServeConfig(host="[::1]")) is None
    assert plaintext_warning(ServeConfig(host="localhost")) is None
    for host in ("[::]", "0.0.0.0", "10.1.2.3"):
        warning = plaintext_warning(ServeConfig(host=host))
        assert warning and "PLAINTEXT" in warning and "--tls-cert" in warning
    assert plaintext_warning(ServeConfig(host="0.0.0.0", tls_cert=certs.server[0], tls_key=certs.server[1])) is None


def test_token_file_errors_are_clear(tmp_path: Path, loaded: LoadedModel, caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n", encoding="utf-8")
    for path, needle in ((empty, "no token in the file"), (tmp_path / "missing", "No such file")):
        cfg = config(token_file=path)
        with pytest.raises(OSError, match=needle):
            TaggerServer(cfg, make_holder(cfg, loaded)).start()
    with caplog.at_level(logging.DEBUG):
        cfg = config(token_file=tmp_path / "missing")
        with pytest.raises(OSError):
            TaggerServer(cfg, make_holder(cfg, loaded)).start()
    assert TOKEN not in caplog.text


@pytest.fixture(scope="module")
def seed(shared_dir: Path) -> str:
    return (shared_dir / "examples" / "seed-article.txt").read_text(encoding="utf-8")


def test_a_plaintext_health_port_for_probes_serves_health_only(loaded: LoadedModel, certs: Certs,
                                                               token_file: Path) -> None:
    """Kubernetes' grpc probe speaks neither TLS nor tokens: --health-port answers it, and nothing else."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        health_port = s.getsockname()[1]
    cfg = config(tls_cert=certs.server[0], tls_key=certs.server[1], token_file=token_file, health_port=health_port)
    with running(cfg, make_holder(cfg, loaded)) as srv, grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.TopicTaggerStub(ch)
        assert code_of(stub.Tag, pb.TagRequest(document=pb.Document(text="خبر")), timeout=10,
                       metadata=(("authorization", f"Bearer {TOKEN}"),)) == grpc.StatusCode.UNIMPLEMENTED
        assert code_of(ProtoReflectionDescriptorDatabase(ch).get_services) == grpc.StatusCode.UNIMPLEMENTED
        srv.stop(0)
        # Stopping the server stops its probe port too.
        assert code_of(health_pb2_grpc.HealthStub(ch).Check, health_pb2.HealthCheckRequest(), timeout=2) in (
            grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
