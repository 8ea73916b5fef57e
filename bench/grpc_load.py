"""Load-test the gRPC service against a naive scikit-learn server and a bare grpcio echo server; prints
one side-by-side table.

    python bench/grpc_load.py                      # about 3 minutes on 2 cores
    python bench/grpc_load.py --duration 3 --rates 200,400
    python bench/grpc_load.py --no-baseline --workers 2 --secure --rates "" --no-batch   # the echo ratio only
    # docs/performance-serving.md's table (~9 minutes): 3 rounds, thread counts, coalescing, and main's tagger
    git archive main | (mkdir -p /tmp/main && tar -x -C /tmp/main)
    python bench/grpc_load.py --no-baseline --workers 2 --secure --rates 400 --duration 5 --no-batch --repeat 3 \
        --tag-threads 16,4 --echo-at-tag-threads --no-coalesce-column --compare-checkout /tmp/main

``echo`` (bench/echo_server.py) is the transport's ceiling: the same Tag method with a fixed
pre-serialised reply, the same threads, SO_REUSEPORT, 2 processes. The "vs echo" row divides each
column's ``Tag max`` by the echo column of the same security (plaintext, or TLS + bearer token with
``--secure``, which adds those columns: a CA and a server certificate made for the run, and
``tagger serve --tls-cert --tls-key --token-file``). Admission control is always on in tagger.

Servers are started one at a time as subprocesses on 127.0.0.1 (so each has the machine to
itself); this process is the client (grpc.aio, several connections so SO_REUSEPORT spreads them
over the workers). For each server:

- ``Tag max``: closed loop, ``--concurrency`` RPCs in flight: single-document throughput;
- ``Tag @ R rps``: open loop at fixed rates; latency is measured from each request's *scheduled*
  send time, so a server that falls behind is charged for the queue (no coordinated omission);
- ``TagBatch``: ``--batch``-document batches, 4 in flight: documents per second.

"offline" is ``from_fields`` + ``Tagger.tag_many`` in this process on the same documents (one
core, best of 3 passes), the reference for TagBatch efficiency. Documents are corpus articles not used for training
the baseline.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pki import Authority  # noqa: E402  (the tests' throw-away PKI)

from tagger._proto import tagger_pb2 as pb
from tagger._proto import tagger_pb2_grpc as pb_grpc
from tagger.artifacts import load_model
from tagger.config import ServeConfig
from tagger.document import from_fields
from tagger.paths import default_model_root, shared_dir
from tagger.tagger import Tagger
from tagger.training.data import read_articles

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"


@dataclass
class Security:
    """How a column is reached: plaintext (all None) or TLS trusting ``ca``, with an optional token."""

    ca: Path | None = None
    token: str | None = None

    @property
    def secure(self) -> bool:
        return self.ca is not None

TAGGER = [sys.executable, "-m", "tagger", "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]


@dataclass
class Run:
    """One measurement: completed RPCs (or documents), wall time, latencies, errors."""

    label: str
    done: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    server_cpu: float = 0.0  # CPU seconds the server's processes used during the cell

    @property
    def cpu_per_call_us(self) -> float:
        return self.server_cpu / self.done * 1e6 if self.done else float("nan")

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


@dataclass
class CpuSnapshot:
    """Machine-wide busy CPU time and the part spent by this process and the server's process tree."""

    wall: float
    busy: float  # seconds, all cores
    ours: float

    @staticmethod
    def _proc_seconds(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0

    @classmethod
    def server_seconds(cls, server_pid: int) -> float:
        """CPU seconds used so far by the server's process tree."""
        return sum(cls._proc_seconds(p) for p in cls._tree(server_pid))

    @staticmethod
    def _tree(pid: int) -> list[int]:
        pids = [pid]
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            for child in task.read_text().split():
                pids.extend(CpuSnapshot._tree(int(child)))
        return pids

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:8]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
        me = os.times()
        ours = me.user + me.system + sum(cls._proc_seconds(p) for p in cls._tree(server_pid))
        return cls(time.monotonic(), busy, ours)

    def others_since(self, before: CpuSnapshot) -> float:
        """Average cores used by everything else (0 on an otherwise idle machine)."""
        return max(0.0, (self.busy - before.busy) - (self.ours - before.ours)) / (self.wall - before.wall)


def load_documents(n: int, skip: int) -> list[pb.Document]:
    articles = itertools.islice(read_articles(shared_dir() / "corpus" / "ant-train.jsonl.xz"), skip, skip + n)
    return [pb.Document(id=a.id, title=a.title, text=a.body) for a in articles]


def offline_rate(docs: list[pb.Document]) -> float:
    tagger = Tagger(load_model(default_model_root()))
    best = 0.0
    for _ in range(3):  # the first pass also fills the stemmer's cache, as the servers' warm-up does
        start = time.perf_counter()
        tagger.tag_many([from_fields(id=d.id, title=d.title, text=d.text) for d in docs])
        best = max(best, len(docs) / (time.perf_counter() - start))
    return best


def start_server(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    """Start a server subprocess; its "ready" line (stdout for the baseline, log for tagger) gives the port.
    An argument "@DIR" runs the command in checkout DIR, with DIR first on the Python path."""
    checkout = next((Path(a[1:]) for a in cmd if a.startswith("@")), None)
    cmd = [a for a in cmd if not a.startswith("@")]
    env = None if checkout is None else {**os.environ, "PYTHONPATH": str(checkout)}
    proc = subprocess.Popen(cmd, cwd=checkout or REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"ready (\d+)|ready: .* on [^ ]*:(\d+)", line)
        if m:
            # Keep reading its output so a chatty server never blocks on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, int(m.group(1) or m.group(2))
    raise RuntimeError(f"server {cmd} exited with code {proc.wait()} before it was ready")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def closed_loop(stubs: list, requests: list, concurrency: int, seconds: float) -> Run:
    run = Run("Tag max")
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    counter = itertools.count()

    async def client(k: int) -> None:
        stub = stubs[k % len(stubs)]
        while loop.time() < end:
            i = next(counter)
            t0 = loop.time()
            try:
                await stub.Tag(requests[i % len(requests)], timeout=10)
                run.latencies.append(loop.time() - t0)
            except grpc.aio.AioRpcError as e:
                run.errors[e.code().name] += 1

    start = loop.time()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    run.seconds = loop.time() - start
    run.done = len(run.latencies)
    return run


async def fixed_rate(stubs: list, requests: list, rate: float, seconds: float) -> Run:
    run = Run(f"Tag @ {rate:g} rps")
    loop = asyncio.get_running_loop()

    async def one(i: int, scheduled: float) -> None:
        try:
            await stubs[i % len(stubs)].Tag(requests[i % len(requests)], timeout=5)
            run.latencies.append(loop.time() - scheduled)
        except grpc.aio.AioRpcError as e:
            run.errors[e.code().name] += 1

    n = int(rate * seconds)
    start = loop.time() + 0.01
    tasks = []
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    run.seconds = loop.time() - start
    run.done = len(run.latencies)
    return run


async def batches(stubs: list, docs: list[pb.Document], size: int, seconds: float, in_flight: int = 4) -> Run:
    run = Run(f"TagBatch x{size}")
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    chunks = [pb.TagBatchRequest(documents=docs[i:i + size]) for i in range(0, len(docs) - size + 1, size)]
    counter = itertools.count()

    async def client(k: int) -> None:
        stub = stubs[k % len(stubs)]
        while loop.time() < end:
            request = chunks[next(counter) % len(chunks)]
            t0 = loop.time()
            try:
                response = await stub.TagBatch(request, timeout=60)
                run.done += len(response.results)
                run.latencies.append(loop.time() - t0)
            except grpc.aio.AioRpcError as e:
                run.errors[e.code().name] += 1

    start = loop.time()
    await asyncio.gather(*(client(k) for k in range(in_flight)))
    run.seconds = loop.time() - start
    return run


class _Authorized:
    """A stub whose calls carry the bearer token (the interface closed_loop and friends use)."""

    def __init__(self, stub: pb_grpc.TopicTaggerStub, token: str) -> None:
        self._stub, self._metadata = stub, (("authorization", f"Bearer {token}"),)

    def Tag(self, request: pb.TagRequest, timeout: float):  # noqa: N802 (the RPC's name)
        return self._stub.Tag(request, timeout=timeout, metadata=self._metadata)

    def TagBatch(self, request: pb.TagBatchRequest, timeout: float):  # noqa: N802
        return self._stub.TagBatch(request, timeout=timeout, metadata=self._metadata)


async def measure(port: int, docs: list[pb.Document], args: argparse.Namespace, security: Security,
                  server_pid: int, tag_only: bool = False) -> list[Run]:
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20),
               ("grpc.max_send_message_length", 64 << 20)]
    target = f"127.0.0.1:{port}"
    if security.secure:
        credentials = grpc.ssl_channel_credentials(root_certificates=security.ca.read_bytes())
        channels = [grpc.aio.secure_channel(target, credentials, options=options) for _ in range(args.connections)]
    else:
        channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(args.connections)]
    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        stubs: list = [pb_grpc.TopicTaggerStub(c) for c in channels]
        if security.token:
            stubs = [_Authorized(s, security.token) for s in stubs]
        requests = [pb.TagRequest(document=d) for d in docs]
        await closed_loop(stubs, requests, args.concurrency, 1.0)  # warm-up: connections, caches
        cpu_before = CpuSnapshot.server_seconds(server_pid)
        runs = [await closed_loop(stubs, requests, args.concurrency, args.duration)]
        runs[0].server_cpu = CpuSnapshot.server_seconds(server_pid) - cpu_before
        for rate in args.rates:
            runs.append(await fixed_rate(stubs, requests, rate, args.duration))
        if not args.no_batch:
            runs.append(await batches(stubs, docs, args.batch, args.duration) if not tag_only
                        else Run(f"TagBatch x{args.batch}"))  # the echo server has no TagBatch
        return runs
    finally:
        await asyncio.gather(*(c.close() for c in channels))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rates", default="200,400,800", help="fixed request rates (comma-separated)")
    parser.add_argument("--concurrency", type=int, default=16, help="RPCs in flight for 'Tag max'")
    parser.add_argument("--connections", type=int, default=16, help="client connections (spread over workers)")
    parser.add_argument("--batch", type=int, default=100, help="documents per TagBatch")
    parser.add_argument("--docs", type=int, default=2000, help="distinct corpus documents to send")
    parser.add_argument("--baseline-train-docs", type=int, default=3000)
    parser.add_argument("--workers", default="1,2", help="tagger --workers values to measure")
    parser.add_argument("--no-baseline", action="store_true", help="leave out the naive scikit-learn server")
    parser.add_argument("--no-echo", action="store_true", help="leave out the bare grpcio echo server")
    parser.add_argument("--secure", action="store_true",
                        help="also measure echo and tagger with TLS, and tagger with a bearer token")
    parser.add_argument("--no-batch", action="store_true", help="skip the TagBatch cell")
    parser.add_argument("--no-coalesce-column", action="store_true",
                        help="add tagger columns with --no-coalesce (single documents tagged one at a time)")
    parser.add_argument("--threads", type=int, default=16, help="RPC threads per echo process (the issue's 16)")
    parser.add_argument("--tag-threads", default="",
                        help="tagger serve --threads values, comma-separated, one column each (default: tagger's "
                             "own default)")
    parser.add_argument("--echo-at-tag-threads", action="store_true",
                        help="add echo columns with each --tag-threads value too (a like-for-like ceiling)")
    parser.add_argument("--compare-checkout", type=Path, default=None,
                        help="also measure tagger from another checkout of this repository (say, an export of "
                             "main), with its own code and model, in the same rounds")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure every server this many times, in rounds (the table shows each server's "
                             "median Tag max run, and every round's ratio to echo)")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",") if r]

    docs = load_documents(args.docs, skip=args.baseline_train_docs)
    chars = np.mean([len(d.title) + len(d.text) for d in docs])
    offline = offline_rate(docs)
    plain = Security()
    threads = ["--threads", str(args.threads)]
    default_threads = ServeConfig().threads
    # (column suffix, tagger serve arguments) for each thread count asked for; the default has no suffix.
    tag_threads = [("" if t == default_threads else f" t{t}", ["--threads", str(t)])
                   for t in map(int, filter(None, args.tag_threads.split(",")))] or [("", [])]
    echo_threads = [("", threads)]
    if args.echo_at_tag_threads:
        echo_threads += [(f" t{t}", ["--threads", str(t)]) for t in
                         sorted({int(a[1]) for _, a in tag_threads if a} - {args.threads})]
    servers: list[tuple[str, list[str], Security]] = [] if args.no_baseline else [
        ("naive sklearn", [sys.executable, "bench/naive_server.py", "--train-docs", str(args.baseline_train_docs)],
         plain)]
    workers = args.workers.split(",")
    if not args.no_echo:
        servers += [(f"echo -w2{suffix}", [sys.executable, "bench/echo_server.py", "--workers", "2", *t], plain)
                    for suffix, t in echo_threads]
    # The other checkout's tagger runs with that checkout on its path (a "@" in the command, see start_server).
    other = [] if args.compare_checkout is None else [(f" ({args.compare_checkout.name})", ["@" + str(
        args.compare_checkout.resolve())])]
    variants = [(suffix, t) for suffix, t in tag_threads] + other
    servers += [(f"tagger -w{w}{suffix}", [*TAGGER, "--workers", w, *t], plain) for w in workers
                for suffix, t in variants]
    if args.no_coalesce_column:
        servers += [(f"tagger -w{w}{suffix} no-coalesce", [*TAGGER, "--workers", w, *t, "--no-coalesce"], plain)
                    for w in workers for suffix, t in tag_threads]
    with tempfile.TemporaryDirectory(prefix="grpc-load-") as tmp:
        if args.secure:
            ca = Authority(Path(tmp), "bench-ca")
            cert, key = ca.issue("server", server=True)
            tokens = Path(tmp) / "tokens"
            tokens.write_text(TOKEN + "\n", encoding="utf-8")
            tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
            if not args.no_echo:
                servers += [(f"echo -w2{suffix} TLS", [sys.executable, "bench/echo_server.py", "--workers", "2", *t,
                                                       *tls], Security(ca.pem)) for suffix, t in echo_threads]
            servers += [(f"tagger -w{w}{suffix} TLS+token", [*TAGGER, "--workers", w, *t, *tls, "--token-file",
                                                               str(tokens)], Security(ca.pem, TOKEN))
                        for w in workers for suffix, t in variants]
        rounds: dict[str, list[list[Run]]] = {name: [] for name, _, _ in servers}
        others: dict[str, float] = {}
        secure_of: dict[str, bool] = {}
        for round_ in range(args.repeat):
            for name, cmd, security in servers:
                print(f"measuring {name} (round {round_ + 1} of {args.repeat}) ...", file=sys.stderr, flush=True)
                proc, port = start_server(cmd)
                try:
                    before = CpuSnapshot.take(proc.pid)
                    rounds[name].append(asyncio.run(measure(port, docs, args, security, proc.pid,
                                                            tag_only=name.startswith("echo"))))
                    others[name] = max(others.get(name, 0.0), CpuSnapshot.take(proc.pid).others_since(before))
                    secure_of[name] = security.secure
                finally:
                    stop_server(proc)
    # Each server's median round by Tag max throughput stands for it in the table.
    results = {name: sorted(runs, key=lambda r: r[0].rate)[len(runs) // 2] for name, runs in rounds.items()}

    print(f"\n{len(docs)} corpus articles, mean {chars:.0f} characters; {os.cpu_count()} CPU cores; "
          f"client: this process, {args.connections} connections; {args.duration:g}s per cell")
    # Other work on a shared machine shows up in throughput and tail latency: say how much there was.
    print(f"CPU used by other processes during each server's run{' (most of any round)' if args.repeat > 1 else ''}: "
          + ", ".join(f"{n}: {c:.2f} cores" for n, c in others.items()))
    if args.repeat > 1:
        print(f"each column: the median of {args.repeat} rounds by Tag max throughput")
    print(f"offline (from_fields + Tagger.tag_many, 1 process): {offline:,.0f} docs/s\n")
    names = list(results)
    width = max(24, *(len(n) + 2 for n in names))
    print(f"{'':<30}" + "".join(f"{n:>{width}}" for n in names))
    # The reference echo of each security: the one with --threads (the issue's 16); "same threads" is the echo
    # with tagger's thread count, when --echo-at-tag-threads added it.
    def threads_of(n: str) -> int:
        m = re.search(r" t(\d+)", n)
        return int(m.group(1)) if m else args.threads if n.startswith("echo") else default_threads

    echo = {secure: n for n, secure in secure_of.items() if n.startswith("echo") and " t" not in n}
    same = {(secure, threads_of(n)): n for n, secure in secure_of.items() if n.startswith("echo")}
    for row in range(len(next(iter(results.values())))):
        label = results[names[0]][row].label
        is_batch = label.startswith("TagBatch")
        cells = []
        for n in names:
            r = results[n][row]
            errs = sum(r.errors.values())
            if is_batch:
                cell = f"{r.rate:,.0f} docs/s ({r.rate / offline:.0%})" if r.done else "-"
            else:
                cell = f"{r.rate:,.0f} rps"
            cells.append(cell + (f" {errs} err" if errs else ""))
        print(f"{label + (' throughput' if not is_batch else ''):<30}" + "".join(f"{c:>{width}}" for c in cells))
        if not is_batch:
            print(f"{'  p50 / p99 ms':<30}" + "".join(
                f"{f'{results[n][row].pct(50):.1f} / {results[n][row].pct(99):.1f}':>{width}}" for n in names))
        if row == 0:
            # Robust to a busy machine: what one call costs the server, whatever else runs.
            print(f"{'  server CPU per call':<30}" + "".join(
                f"{f'{results[n][0].cpu_per_call_us:,.0f} us':>{width}}" for n in names))
        if row == 0:
            def ratio(n: str, ref: str | None) -> str:
                return f"{results[n][0].rate / results[ref][0].rate:.0%}" if ref else "-"

            if echo:
                print(f"{'  vs echo (same security)':<30}" + "".join(
                    f"{ratio(n, echo.get(secure_of[n])):>{width}}" for n in names))
            if len(same) > len(echo):  # echo columns at other thread counts: compare like with like too
                print(f"{'  vs echo, same threads':<30}" + "".join(
                    f"{ratio(n, same.get((secure_of[n], threads_of(n)))):>{width}}" for n in names))
            if args.repeat > 1 and echo:
                # Rounds are paired: each round measures every server once, minutes apart at most.
                def each_round(n: str) -> str:
                    if secure_of[n] not in echo:
                        return "-"
                    theirs = rounds[echo[secure_of[n]]]
                    return " / ".join(f"{a[0].rate / b[0].rate:.0%}" for a, b in zip(rounds[n], theirs))
                print(f"{'  vs echo, each round':<30}" + "".join(f"{each_round(n):>{width}}" for n in names))
    errors = {n: sum((r.errors for runs in rs for r in runs), Counter()) for n, rs in rounds.items()}
    if any(errors.values()):
        print("\nerrors: " + "; ".join(f"{n}: {dict(e)}" for n, e in errors.items() if e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
