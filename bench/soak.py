"""Soak bench (issue 15, "A soak, as a bench"): `tagger serve --workers 2` under steady load through
model publishes, a corrupt publish, a rollback, a worker kill -9 and a final SIGTERM.

    .venv/bin/python bench/soak.py --minutes 8

127.0.0.1 only; bounded by --minutes (plus start-up and shutdown) and --max-requests.

What it does:
  * copies the shipped model into a temporary model folder as version 1 and starts
    `python -m tagger serve --workers 2 --host 127.0.0.1 --port 0 --metrics-port 0 --reload-interval 1
    --max-connection-age 10` (port read from its "ready:" line);
  * load threads through one tagger.client.TaggerClient (4 connections): Tag (one document), TagBatch
    (50 documents of ../shared/gold/dev.jsonl), TagStream (20 documents per stream); plus a health
    thread calling grpc.health.v1 Check on its own channel (no retries) every 0.1 s, timing each;
  * during the run, at fixed fractions of it: 5 good publishes (versions 2, 3, 5, 6, 7: a hidden
    .tmp folder renamed into place), 1 corrupt publish (version 4, 16 bytes of model.npz zeroed:
    must be refused), 1 kill -9 of one worker, 1 rollback (version 7 deleted: 6 serves again);
  * at the end: load stopped, RSS read, SIGTERM to the parent, its exit code recorded;
  * prints one table. Retries are counted by wrapping the client's backoff (_sleep_before_retry): the
    client retries UNAVAILABLE, CANCELLED and "busy" RESOURCE_EXHAUSTED (tagger-retry-after-ms) until
    the call's deadline; a retried call that then succeeds is not a failure.

Goal: 0 failed RPCs outside the killed worker's in-flight ones (failures within --kill-window s of
the kill -9), worker RSS flat (a surviving worker grows < 20 MB from its RSS after the first 10 % of the
run under load, before the first publish, to the end; the cold start-up RSS is printed too), health p99 < 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tagger.artifacts import MODEL_FILE, copy_version, resolve_model_dir
from tagger.client import TaggerClient
from tagger.paths import default_model_root, shared_dir

NAME = "arabic-news-topics"
SHIPPED = resolve_model_dir(default_model_root())


# ------------------------------------------------------------------ model folder
def publish_copy(root: Path, version: int, *, corrupt: bool = False) -> None:
    """Publish the shipped model as ``version`` (tagger.artifacts.copy_version); ``corrupt`` flips bytes
    of the model file before the staged folder is renamed into place."""
    if not corrupt:
        copy_version(SHIPPED, root, version)
        return
    staged = copy_version(SHIPPED, root.parent / "staging" / root.name, version)
    with open(staged / MODEL_FILE, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    os.rename(staged, root / str(version))


# ------------------------------------------------------------------ processes
def workers(parent: int) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{parent}/task").glob("*/children"):
        try:
            pids.extend(int(p) for p in task.read_text().split())
        except OSError:
            pass
    return sorted(pids)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Server:
    def __init__(self, model_root: Path, extra: list[str]) -> None:
        cmd = [sys.executable, "-m", "tagger", "serve", "--workers", "2", "--host", "127.0.0.1", "--port", "0",
               "--metrics-port", "0", "--reload-interval", "1", "--max-connection-age", "10",
               "--model", str(model_root), *extra]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True,
                                     env=os.environ | {"TAGGER_LOG_LEVEL": "INFO"})
        self.log: list[tuple[float, str]] = []
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append((time.monotonic(), line))
            m = re.search(r"ready: .* on 127\.0\.0\.1:(\d+)", line)
            if m and not self.port:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 120) -> int:
        if not (self._ready.wait(timeout) and self.port):
            raise RuntimeError("server did not start:\n" + "".join(line for _, line in self.log))
        return self.port


# ------------------------------------------------------------------ client with counted retries
class CountingClient(TaggerClient):
    """TaggerClient whose backoffs are counted per RPC type (the thread names the RPC it is making)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.local = threading.local()
        self.retries_by_rpc: Counter[str] = Counter()
        self.retried_calls: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def _sleep_before_retry(self, attempt: int, deadline: float, at_least: float = 0.0) -> bool:
        go = super()._sleep_before_retry(attempt, deadline, at_least)
        if go:
            rpc = getattr(self.local, "rpc", "?")
            with self._count_lock:
                self.retries_by_rpc[rpc] += 1
                if not getattr(self.local, "retried", False):
                    self.retried_calls[rpc] += 1
                    self.local.retried = True
        return go


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.failures: list[tuple[float, str, str]] = []  # (monotonic time, rpc, status)
        self.versions: Counter[str] = Counter()
        self.version_first: dict[str, float] = {}
        self.version_last: dict[str, float] = {}
        self.health_latency: list[float] = []

    def failed(self, rpc: str, error: BaseException) -> None:
        code = error.code().name if isinstance(error, grpc.RpcError) else type(error).__name__
        with self.lock:
            self.failures.append((time.monotonic(), rpc, code))


def load_docs(n: int) -> list[dict]:
    docs = []
    with open(shared_dir() / "gold" / "dev.jsonl", encoding="utf-8") as f:
        for line in f:
            a = json.loads(line)
            docs.append({"id": a["id"], "title": a.get("title", ""), "text": a.get("text", "")})
            if len(docs) == n:
                break
    return docs


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="length of the loaded phase (default 8)")
    ap.add_argument("--max-requests", type=int, default=2_000_000, help="stop sending after this many RPCs")
    ap.add_argument("--tag-threads", type=int, default=3)
    ap.add_argument("--batch-threads", type=int, default=1)
    ap.add_argument("--stream-threads", type=int, default=1)
    ap.add_argument("--kill-window", type=float, default=2.0, help="seconds after the kill -9 whose failures "
                    "are counted as the killed worker's in-flight RPCs")
    ap.add_argument("--timeout", type=float, default=30.0, help="client deadline per call, retries included")
    ap.add_argument("serve_args", nargs="*", help="extra `tagger serve` flags (after --)")
    args = ap.parse_args()
    seconds = args.minutes * 60

    tmp = Path(tempfile.mkdtemp(prefix="tagger-soak-"))
    root = tmp / NAME
    root.mkdir()
    publish_copy(root, 1)
    docs = load_docs(50)

    server = Server(root, args.serve_args)
    stats = Stats()
    stop = threading.Event()
    events: list[tuple[float, str]] = []
    try:
        port = server.wait_ready()
        target = f"127.0.0.1:{port}"
        parent = server.proc.pid
        for _ in range(200):  # both workers up
            if len(workers(parent)) == 2:
                break
            time.sleep(0.1)
        client = CountingClient(target, timeout=args.timeout, connections=4)
        client.wait_until_serving(60)

        budget = threading.Semaphore(args.max_requests)

        def loop(rpc: str, call) -> None:
            while not stop.is_set() and budget.acquire(blocking=False):
                client.local.rpc, client.local.retried = rpc, False
                with stats.lock:
                    stats.sent[rpc] += 1
                try:
                    version = call()
                    if version:
                        with stats.lock:
                            stats.versions[version] += 1
                            stats.version_first.setdefault(version, time.monotonic())
                            stats.version_last[version] = time.monotonic()
                except Exception as e:  # noqa: BLE001 (every failure is counted)
                    stats.failed(rpc, e)

        def tag_one(i=[0]) -> str:  # noqa: B006 (a cheap rotating index)
            i[0] += 1
            return client.tag(docs[i[0] % len(docs)]).model_version

        def tag_batch() -> str:
            return client.tag_batch(docs)[-1].model_version

        def tag_stream() -> str:
            results = list(client.tag_stream(docs[:20], timeout=args.timeout))
            return results[-1].model_version

        health_channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        health = health_pb2_grpc.HealthStub(health_channel)

        def health_loop() -> None:
            while not stop.is_set():
                with stats.lock:
                    stats.sent["Health.Check"] += 1
                start = time.perf_counter()
                try:
                    health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    with stats.lock:
                        stats.health_latency.append(time.perf_counter() - start)
                except grpc.RpcError as e:
                    stats.failed("Health.Check", e)
                stop.wait(0.1)

        threads = ([threading.Thread(target=loop, args=("Tag", tag_one)) for _ in range(args.tag_threads)]
                   + [threading.Thread(target=loop, args=("TagBatch", tag_batch)) for _ in range(args.batch_threads)]
                   + [threading.Thread(target=loop, args=("TagStream", tag_stream)) for _ in range(args.stream_threads)]
                   + [threading.Thread(target=health_loop)])

        # RSS: every pid ever seen as a worker -> (first, last, max) samples.
        rss: dict[int, list[float]] = {}
        first_seen: dict[int, float] = {}

        def sample_rss() -> None:
            for pid in workers(parent):
                r = rss_mb(pid)
                if r is None:
                    continue
                first_seen.setdefault(pid, time.monotonic())
                if pid not in rss:
                    rss[pid] = [r, r, r]
                else:
                    rss[pid][1] = r
                    rss[pid][2] = max(rss[pid][2], r)

        t0 = time.monotonic()
        start_pids = workers(parent)
        sample_rss()
        start_rss = {p: rss_mb(p) for p in start_pids}
        warm_rss: dict[int, float | None] = {}
        for t in threads:
            t.start()

        def publish(v: int, corrupt: bool = False) -> None:
            publish_copy(root, v, corrupt=corrupt)
            events.append((time.monotonic(), f"{'corrupt ' if corrupt else ''}publish {v}"))

        killed: dict[str, float | int] = {}

        def kill_one() -> None:
            victim = workers(parent)[0]
            os.kill(victim, signal.SIGKILL)
            killed.update(pid=victim, at=time.monotonic())
            events.append((time.monotonic(), f"kill -9 worker pid {victim}"))

        def rollback() -> None:
            shutil.rmtree(root / "7")
            events.append((time.monotonic(), "rollback: delete version 7"))

        schedule = [(0.10, lambda: publish(2)), (0.20, lambda: publish(3)), (0.30, lambda: publish(4, True)),
                    (0.40, lambda: publish(5)), (0.50, kill_one), (0.60, lambda: publish(6)),
                    (0.70, lambda: publish(7)), (0.82, rollback)]
        for frac, action in schedule:
            if not warm_rss:  # baseline after the first 10 % under load (caches and allocator warmed)
                while time.monotonic() < t0 + frac * seconds - 1:
                    sample_rss()
                    time.sleep(1.0)
                warm_rss = {p: rss_mb(p) for p in workers(parent)}
            while time.monotonic() < t0 + frac * seconds:
                sample_rss()
                time.sleep(min(1.0, max(0.0, t0 + frac * seconds - time.monotonic())))
            action()
        while time.monotonic() < t0 + seconds:
            sample_rss()
            time.sleep(1.0)

        stop.set()
        for t in threads:
            t.join(timeout=args.timeout + 30)
        loaded_seconds = time.monotonic() - t0
        sample_rss()
        end_pids = workers(parent)
        end_rss = {p: rss_mb(p) for p in end_pids}
        client.close()
        health_channel.close()

        term_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            exit_code = server.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            exit_code = f"did not stop in 60 s (killed: {server.proc.wait()})"
        stop_seconds = time.monotonic() - term_at
    finally:
        stop.set()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ report
    kill_at = float(killed.get("at", float("inf")))
    in_kill = Counter()
    other = Counter()
    for at, rpc, code in stats.failures:
        (in_kill if kill_at <= at <= kill_at + args.kill_window else other)[(rpc, code)] += 1
    lines: list[str] = []
    out = lines.append
    out(f"soak: {loaded_seconds:.0f} s under load; server: {' '.join(server.cmd[1:])}")
    out("")
    out(f"{'RPC':<13} {'sent':>8} {'failed':>7} {'failed in kill window':>22} {'failed elsewhere':>17} "
        f"{'calls retried':>14} {'retries':>8}")
    for rpc in ["Tag", "TagBatch", "TagStream", "Health.Check"]:
        k = sum(n for (r, _), n in in_kill.items() if r == rpc)
        o = sum(n for (r, _), n in other.items() if r == rpc)
        out(f"{rpc:<13} {stats.sent[rpc]:>8} {k + o:>7} {k:>22} {o:>17} "
            f"{client.retried_calls.get(rpc, 0) if rpc != 'Health.Check' else '-':>14} "
            f"{client.retries_by_rpc.get(rpc, 0) if rpc != 'Health.Check' else '-':>8}")
    out(f"{'total':<13} {sum(stats.sent.values()):>8} {len(stats.failures):>7} {sum(in_kill.values()):>22} "
        f"{sum(other.values()):>17} {sum(client.retried_calls.values()):>14} {sum(client.retries_by_rpc.values()):>8}")
    out("failures by status: in kill window " + (", ".join(f"{r} {c} x{n}" for (r, c), n in sorted(in_kill.items())) or "none")
        + "; elsewhere " + (", ".join(f"{r} {c} x{n}" for (r, c), n in sorted(other.items())) or "none"))
    out("(Health.Check: raw grpc.health.v1 stub, no client retries; retried = calls that backed off at least once)")
    out("")
    out("events (s from load start):")
    for at, what in events:
        out(f"  {at - t0:7.1f}  {what}")
    out("")
    out("worker RSS (MB, VmRSS):")
    for pid in sorted(rss, key=lambda p: first_seen[p]):
        first, last, peak = rss[pid]
        role = ("killed (kill -9)" if pid == killed.get("pid") else
                "replacement (started after the kill)" if pid not in start_pids else "survived whole run")
        s = start_rss.get(pid)
        e = end_rss.get(pid)
        w = warm_rss.get(pid)
        out(f"  pid {pid:<8} {role:<37} start {s if s is not None else first:7.1f}  "
            f"warm {f'{w:7.1f}' if w is not None else '      -'}  "
            f"end {f'{e:7.1f}' if e is not None else '   gone'}  (last seen {last:.1f}, peak {peak:.1f}, "
            f"first seen at {first_seen[pid] - t0:.0f} s)")
    out("")
    lat = stats.health_latency
    out(f"health check under load: n={len(lat)}  p50 {pct(lat, 0.5) * 1000:.1f} ms  p99 {pct(lat, 0.99) * 1000:.1f} ms  "
        f"max {max(lat, default=float('nan')) * 1000:.1f} ms")
    out("model versions served (results from Tag/TagBatch/TagStream, first seen at s):")
    for v in sorted(stats.versions, key=lambda v: stats.version_first[v]):
        out(f"  {v:<24} {stats.versions[v]:>8} calls  first {stats.version_first[v] - t0:7.1f} s  "
            f"last {stats.version_last[v] - t0:7.1f} s")
    refused = [line.strip() for _, line in server.log if re.search(r"refus|sha256|failed", line, re.IGNORECASE)]
    out(f"server log lines about refused/failed loads: {len(refused)}"
        + (f" (first: {refused[0][:160]})" if refused else ""))
    restarts = [line.strip() for _, line in server.log if re.search(r"exited|restart", line, re.IGNORECASE)]
    out(f"server log lines about worker exits/restarts: {len(restarts)}"
        + (f" (first: {restarts[0][:160]})" if restarts else ""))
    out(f"parent exit code after SIGTERM: {exit_code} (stopped in {stop_seconds:.1f} s)")
    out("")
    end_survivors = [p for p in start_pids if p in end_rss and start_rss.get(p) and end_rss.get(p)]
    growth = max((end_rss[p] - (warm_rss.get(p) or start_rss[p]) for p in end_survivors), default=float("nan"))
    cold_growth = max((end_rss[p] - start_rss[p] for p in end_survivors), default=float("nan"))
    goal_fail = sum(other.values()) == 0
    goal_health = pct(lat, 0.99) < 1.0
    out(f"goal 0 failed RPCs outside the kill window: {'MET' if goal_fail else 'NOT MET'} ({sum(other.values())})")
    out(f"goal RSS flat (surviving worker warm baseline->end growth < 20 MB): "
        f"{'MET' if growth < 20 else 'NOT MET'} ({growth:+.1f} MB; from cold start {cold_growth:+.1f} MB)")
    out(f"goal health p99 < 1 s: {'MET' if goal_health else 'NOT MET'} ({pct(lat, 0.99) * 1000:.1f} ms)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
