"""The supervisor of `tagger serve --workers 2` as a real subprocess (issue 15, defects 3, 4 and 7):
a worker that exits unasked is replaced and counted, connections rotate so a replaced worker carries
traffic again within seconds, and SIGTERM during the model load stops cleanly."""
from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from serve_process import ServeProcess

from tagger.client import TaggerClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers(parent: int) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{parent}/task").glob("*/children"):
        pids.extend(int(p) for p in task.read_text().split())
    return sorted(pids)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(condition: Callable[[], bool], timeout: float, what: str, log: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + "".join(log)
        time.sleep(0.05)


def test_a_worker_stopped_on_its_own_is_replaced_logged_and_counted() -> None:
    metrics_port = free_port()
    with ServeProcess("--port", "0", "--workers", "2", "--reload-interval", "0", "--metrics-port",
                      str(metrics_port)) as server:
        before = workers(server.proc.pid)
        assert len(before) == 2
        os.kill(before[1], signal.SIGTERM)  # the worker alone: it stops gracefully and exits 0
        wait_until(lambda: len(workers(server.proc.pid)) == 2 and workers(server.proc.pid) != before, 60,
                   "a replacement worker", server.log)
        wait_until(lambda: any("is serving" in line for line in server.log), 60, "the replacement serving",
                   server.log)
        log = "".join(server.log)
        assert re.search(rf"worker 1 \(pid {before[1]}\) exited with code 0 without being asked to; "
                         "starting a new one", log), log
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'tagger_worker_restarts_total{reason="exit 0"} 1.0' in metrics, metrics
        with TaggerClient(server.target, timeout=20) as client:
            assert client.health() == "SERVING"
        assert server.terminate() == 0
    assert "Traceback" not in "".join(server.log)


def test_connections_rotate_so_a_restarted_worker_carries_traffic_again() -> None:
    """Clients that reconnected to the surviving worker after a kill -9 move back in part once their
    connections reach --max-connection-age (1 s here): the replacement does real work within seconds."""
    with ServeProcess("--port", "0", "--workers", "2", "--reload-interval", "0", "--metrics-port", "0",
                      "--max-connection-age", "1") as server:
        stop = threading.Event()
        errors: list[BaseException] = []
        client = TaggerClient(server.target, timeout=30, connections=4)

        def load() -> None:
            try:
                while not stop.is_set():
                    client.tag({"text": "فرضت واشنطن عقوبات جديدة على موسكو وبحث الوزير التعاون العسكري"})
            except BaseException as e:  # every failure fails the test
                errors.append(e)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            victim = workers(server.proc.pid)[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: any("is serving" in line for line in server.log), 60, "the replacement serving",
                       server.log)
            replacement = next(p for p in workers(server.proc.pid) if p != victim)
            survivor = next(p for p in workers(server.proc.pid) if p not in (victim, replacement))
            time.sleep(1.0)  # its start-up work done; from here on its CPU time is serving
            start = {p: cpu_seconds(p) for p in (replacement, survivor)}
            time.sleep(4.0)
            used = {p: cpu_seconds(p) - start[p] for p in start}
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            client.close()
        assert not errors, errors
        # Without rotation the replacement serves no connection and idles (~0 s of CPU).
        assert used[replacement] > 0.2 * used[survivor] and used[replacement] > 0.2, used


def test_sigterm_during_model_load_stops_cleanly() -> None:
    server = ServeProcess("--port", "0", "--workers", "1", "--metrics-port", "0")
    try:
        wait_until(lambda: any("loading the model" in line for line in server.log), 60, "the model load",
                   server.log)
        code = server.terminate()
        log = "".join(server.log)
        assert code == 0, log
        assert "ready:" not in log and "stopped before serving" in log and "Traceback" not in log, log
    finally:
        server.kill()
