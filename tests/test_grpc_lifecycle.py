"""`tagger serve` as a real deployment would run it (subprocesses, --workers 2, SIGTERM): continuous
client load across a model publish and a server shutdown fails no RPC, and responses switch
model_version."""
from __future__ import annotations

import re
import socket
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serve_process import ClientLoad, ServeProcess

from tagger.client import TaggerClient
from tagger.artifacts import copy_version, resolve_model_dir
from tagger.paths import default_model_root
from tagger.tagger import TagOptions

NAME = "arabic-news-topics"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Serve = ServeProcess


def publish_copy(root: Path, version: int) -> None:
    copy_version(root / "1", root, version)


class Load(ClientLoad):
    """Client threads calling Tag, TagBatch and TagStream until stopped; counts versions and errors."""

    def __init__(self, port: int, seed: str) -> None:
        self.client = TaggerClient(f"127.0.0.1:{port}", timeout=30, connections=4)
        self.seed = seed
        self.seen: dict[str, Counter[str]] = {"Tag": Counter(), "TagBatch": Counter(), "TagStream": Counter()}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(fn,)) for fn in (self._tag, self._batch, self._stream)]

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # every failure is a failed test
            self.errors.append(f"{fn.__name__}: {e!r}")

    def _record(self, method: str, result) -> None:
        assert {t.topic for t in result.topics} == {"diplomacy", "military", "sanctions"}, result
        self.seen[method][result.model_version] += 1

    def _tag(self) -> None:
        while not self.stop.is_set():
            self._record("Tag", self.client.tag({"raw": self.seed}))

    def _batch(self) -> None:
        while not self.stop.is_set():
            results = self.client.tag_batch([{"id": str(i), "raw": self.seed} for i in range(8)])
            assert [r.id for r in results] == [str(i) for i in range(8)]
            for r in results:
                self._record("TagBatch", r)

    def _stream(self) -> None:
        def documents() -> Iterator[dict]:
            n = 0
            while not self.stop.is_set():
                yield {"id": str(n), "raw": self.seed}
                n += 1

        expected = 0
        for result in self.client.tag_stream(documents(), TagOptions(top_k=3)):
            assert result.id == str(expected), "stream answers out of order or lost"
            expected += 1
            self._record("TagStream", result)

    def total(self) -> int:
        return sum(sum(c.values()) for c in self.seen.values())

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        for _ in range(600):
            if condition() or self.errors:
                break
            self.stop.wait(0.05)
        assert not self.errors, self.errors
        assert condition(), f"timed out waiting for {what}: {self.seen}"


@pytest.fixture()
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / NAME
    root.mkdir()
    copy_version(resolve_model_dir(default_model_root()), root, 1)
    return root


def test_publish_and_sigterm_under_load_fail_no_rpc(model_root: Path, shared_dir: Path) -> None:
    seed = (shared_dir / "examples" / "seed-article.txt").read_text(encoding="utf-8")
    metrics_port = free_port()
    old = Serve("--port", "0", "--workers", "2", "--model", str(model_root), "--reload-interval", "0.2",
                "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1", "--grace", "10")
    new: Serve | None = None
    try:
        port = old.wait_ready()
        with Load(port, seed) as load:
            load.wait_for(lambda: all(c[f"{NAME}/1"] for c in load.seen.values()), "traffic on version 1")

            publish_copy(model_root, 2)
            load.wait_for(lambda: all(c[f"{NAME}/2"] >= 5 for c in load.seen.values()), "the switch to version 2")

            # Summed over both workers; each worker reports the version it serves. A worker swaps
            # the model, then updates its gauge: a loaded machine can serve a few requests between.
            serving_v2 = rf'tagger_model_info\{{pid="\d+",version="{NAME}/2"\}} 1\.0'
            metrics = ""

            def both_report_v2() -> bool:
                nonlocal metrics
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
                    metrics = response.read().decode()
                return len(re.findall(serving_v2, metrics)) == 2

            load.wait_for(both_report_v2, "both workers' model_info gauge on version 2")
            assert re.search(r'tagger_grpc_requests_total\{code="OK",method="Tag"\} [1-9]', metrics), metrics

            # A replacement takes the same port (SO_REUSEPORT), then the old server is told to stop.
            new = Serve("--port", str(port), "--workers", "1", "--model", str(model_root), "--metrics-port", "0")
            new.wait_ready()
            assert old.terminate() == 0
            after = load.total()
            load.wait_for(lambda: load.total() > after + 50, "traffic served by the replacement")
        assert not load.errors, load.errors
        assert set(load.seen["Tag"]) == {f"{NAME}/1", f"{NAME}/2"}
        log = "".join(old.log)
        assert "shutting down 2 worker(s)" in log and "stopped" in log and "Traceback" not in log, log
        assert new.terminate() == 0
    finally:
        old.kill()
        if new is not None:
            new.kill()
