"""tagger.client: retries, deadlines, batch splitting, a stream that survives its server stopping,
and `tagger tag --server`."""
from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tagger.artifacts import LoadedModel
from tagger.cli import main as cli_main
from tagger.client import TaggerClient
from tagger.config import ServeConfig
from tagger.server import TaggerServer, make_holder, running

MISSION = {"diplomacy", "military", "sanctions"}


def config(**changes: object) -> ServeConfig:
    return ServeConfig(host="127.0.0.1", port=0, workers=1, threads=8, metrics_port=0, reload_interval=0,
                       grace=5).with_overrides(**changes)


@pytest.fixture(scope="module")
def server(loaded: LoadedModel) -> Iterator[TaggerServer]:
    cfg = config(max_batch=4, max_message_mb=0.05)  # 4 documents or ~52 KB per message
    with running(cfg, make_holder(cfg, loaded)) as srv:
        yield srv


class Failing(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def test_retries_unavailable_and_cancelled_but_nothing_else() -> None:
    client = TaggerClient("127.0.0.1:1", retries=3, backoff=0.001)
    calls: list[float] = []

    def flaky(stub: object, timeout: float) -> str:
        calls.append(timeout)
        if len(calls) < 3:
            raise Failing(grpc.StatusCode.UNAVAILABLE if len(calls) == 1 else grpc.StatusCode.CANCELLED)
        return "ok"

    assert client._call(flaky, timeout=10) == "ok" and len(calls) == 3
    assert all(0 < t <= 10 for t in calls)  # every attempt gets what is left of one deadline

    def invalid(stub: object, timeout: float) -> str:
        calls.append(timeout)
        raise Failing(grpc.StatusCode.INVALID_ARGUMENT)

    calls.clear()
    with pytest.raises(grpc.RpcError):
        client._call(invalid, timeout=10)
    assert len(calls) == 1

    def down(stub: object, timeout: float) -> str:
        calls.append(timeout)
        raise Failing(grpc.StatusCode.UNAVAILABLE)

    calls.clear()
    with pytest.raises(grpc.RpcError):
        client._call(down, timeout=10)
    assert len(calls) == 4  # 1 + retries
    client.close()


def test_a_server_that_comes_up_late_is_reached(loaded: LoadedModel) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(port=port)
    started = threading.Event()
    release = threading.Event()

    def serve_later() -> None:
        with running(cfg, make_holder(cfg, loaded)):
            started.set()
            release.wait(30)

    with TaggerClient(f"127.0.0.1:{port}", retries=100, backoff=0.01, max_backoff=0.1, timeout=30) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.tag({"text": "خبر"}, timeout=0.05)  # nothing listens yet
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        thread = threading.Thread(target=serve_later)
        thread.start()
        try:
            assert client.tag({"text": "فرضت واشنطن عقوبات على موسكو"}).model_version  # retried until up
            assert started.is_set()
        finally:
            release.set()
            thread.join()


def test_default_retries_outlast_a_restart_of_a_few_seconds(loaded: LoadedModel) -> None:
    """A server restart (model load and warm-up) takes seconds; with its defaults the client keeps
    retrying until its deadline instead of giving up after a fixed handful of quick retries."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(port=port)
    release = threading.Event()

    def serve_in_3_seconds() -> None:
        time.sleep(3.0)
        with running(cfg, make_holder(cfg, loaded)):
            release.wait(30)

    thread = threading.Thread(target=serve_in_3_seconds)
    thread.start()
    try:
        with TaggerClient(f"127.0.0.1:{port}", timeout=30) as client:
            assert client.tag({"text": "فرضت واشنطن عقوبات على موسكو"}).model_version
            assert [r.id for r in client.tag_stream([{"id": "s", "text": "خبر"}])] == ["s"]
    finally:
        release.set()
        thread.join()


def test_tag_batch_is_split_by_the_server_limits(server: TaggerServer) -> None:
    with TaggerClient(f"127.0.0.1:{server.port}", connections=3) as client:
        assert client.limits().max_batch_documents == 4
        results = client.tag_batch([{"id": str(i), "text": "خبر اقتصادي عن التجارة"} for i in range(11)])
        assert [r.id for r in results] == [str(i) for i in range(11)]
        big = "قالت وزارة الخارجية إن المفاوضات مستمرة. " * 250  # ~20 KB of UTF-8 each
        results = client.tag_batch([{"id": str(i), "text": big} for i in range(5)])  # split by size too
        assert [r.id for r in results] == [str(i) for i in range(5)]
        with pytest.raises(grpc.RpcError) as info:
            client.tag_batch([{"id": "ok", "text": "خبر"}, {"id": "empty"}])
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "documents[1]" in info.value.details()


def test_stream_moves_to_a_new_server_without_losing_or_repeating(loaded: LoadedModel, shared_dir: Path) -> None:
    """The first server stops mid-stream; the client resends what was unanswered to its replacement."""
    seed = (shared_dir / "examples" / "seed-article.txt").read_text(encoding="utf-8")
    first_cfg = config()
    first = TaggerServer(first_cfg, make_holder(first_cfg, loaded))
    port = first.start()
    first.ready()
    second_cfg = config(port=port)
    second = TaggerServer(second_cfg, make_holder(second_cfg, loaded))
    feed: queue.Queue = queue.Queue()
    for i in range(3):  # three documents in flight at any time
        feed.put({"id": str(i), "raw": seed})
    n_docs, handover = 30, 10
    try:
        with TaggerClient(f"127.0.0.1:{port}", timeout=60) as client:
            ids = []
            for result in client.tag_stream(iter(feed.get, None)):
                assert {t.topic for t in result.topics} == MISSION
                ids.append(result.id)
                nxt = len(ids) + 2
                feed.put({"id": str(nxt), "raw": seed} if nxt < n_docs else None)
                if len(ids) == handover:
                    second.start()  # same port (SO_REUSEPORT)
                    second.ready()
                    threading.Thread(target=first.stop).start()
        assert ids == [str(i) for i in range(n_docs)]
        streams = second.metrics.registry.get_sample_value(
            "tagger_grpc_requests_total", {"method": "TagStream", "code": "OK"})
        assert streams == 1  # the stream really moved
    finally:
        first.stop(0)
        second.stop(0)


def test_stream_reraises_an_error_from_the_documents(server: TaggerServer) -> None:
    def documents() -> Iterator[dict]:
        yield {"id": "1", "text": "خبر"}
        raise RuntimeError("broken input")

    with TaggerClient(f"127.0.0.1:{server.port}") as client:
        got = []
        with pytest.raises(RuntimeError, match="broken input"):
            for r in client.tag_stream(documents()):
                got.append(r.id)
        assert got == ["1"]


def test_cli_tag_server_matches_local(server: TaggerServer, shared_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    seed = str(shared_dir / "examples" / "seed-article.txt")
    assert cli_main(["tag", seed]) == 0
    local = json.loads(capsys.readouterr().out)
    assert cli_main(["tag", "--server", f"127.0.0.1:{server.port}", seed]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert [t["topic"] for t in remote["topics"]] == [t["topic"] for t in local["topics"]]
    assert {t["topic"] for t in remote["topics"]} == MISSION
    assert remote["scores"] == pytest.approx(local["scores"], abs=1e-4)
    assert remote["model_version"] == local["model_version"] and remote["dropped_tags"] == local["dropped_tags"]


def test_cli_tag_server_fails_fast_when_nothing_listens(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14: nothing on the port is a one-line error at once, not ~30 s of silent retrying."""
    seed = str(shared_dir / "examples" / "seed-article.txt")
    t0 = time.monotonic()
    assert cli_main(["tag", "--server", "127.0.0.1:1", seed]) == 2
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect to 127.0.0.1:1" in err, err
    assert elapsed < 10, elapsed  # the default --timeout is 30 s: a refused connection must not wait for it
    assert cli_main(["tag", "--server", "127.0.0.1:1", "--timeout", "0", seed]) == 2
    assert "--timeout must be > 0" in capsys.readouterr().err


def test_cli_tag_server_tags_lone_surrogates_like_local(server: TaggerServer, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """JSON escapes can carry lone surrogates, which protobuf strings (UTF-8) cannot: the remote
    output must still be the local one, id and tags included, not a crash."""
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"id": "s\\ud800", "title": "عقوبات \\udc00 جديدة", "text": "فرضت واشنطن عقوبات \\ud800 على طهران", '
        '"tags": ["سياسة", "x\\udfff"]}\n{"id": "plain", "text": "فاز المنتخب في المباراة"}\n', "utf-8")
    assert cli_main(["tag", str(src)]) == 0
    local = capsys.readouterr().out
    assert cli_main(["tag", "--server", f"127.0.0.1:{server.port}", str(src)]) == 0
    remote = capsys.readouterr().out
    assert '"id": "s\\ud800"' in local and '"x\\udfff"' in local
    got, want = [json.loads(x) for x in remote.splitlines()], [json.loads(x) for x in local.splitlines()]
    for g, w in zip(got, want, strict=True):
        assert g["scores"] == pytest.approx(w.pop("scores"), abs=1e-4)
        assert g | {"scores": None} == w | {"scores": None}


def test_round_robin_spreads_calls_over_every_address(loaded: LoadedModel) -> None:
    """A headless Kubernetes Service resolves to one address per pod; with round_robin the client sends
    calls to all of them, with pick_first (gRPC's default) to one. Two servers stand in for two pods."""
    cfg = config()
    with running(cfg, make_holder(cfg, loaded)) as a, running(cfg, make_holder(cfg, loaded)) as b:
        target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"

        def served(srv: TaggerServer) -> float:
            return srv.metrics.registry.get_sample_value("tagger_grpc_requests_total",
                                                         {"method": "Tag", "code": "OK"}) or 0.0

        with TaggerClient(target, load_balancing="round_robin", timeout=20) as client:
            for _ in range(20):
                client.tag({"text": "خبر"})
        assert served(a) >= 5 and served(b) >= 5, (served(a), served(b))
        before = served(a), served(b)
        with TaggerClient(target, timeout=20) as client:
            for _ in range(20):
                client.tag({"text": "خبر"})
        assert sorted([served(a) - before[0], served(b) - before[1]]) == [0, 20]
        with TaggerClient(f"dns:///localhost:{a.port}", load_balancing="round_robin", timeout=20) as client:
            assert client.tag({"text": "خبر"}).model_version
