"""Memory of one server worker under a burst of large TagBatch requests: peak RSS and RSS afterwards.

    python bench/burst_memory.py                       # ~1 minute; 127.0.0.1 only
    python bench/burst_memory.py --burst 12 --mb 40

Each column is `tagger serve --workers 1` started fresh; this process sends ``--burst`` TagBatch
requests of ``--mb`` MB each (1,000 documents) at once, waits for every answer (tagged or refused
with RESOURCE_EXHAUSTED), then reads the worker's peak RSS (VmHWM) and its RSS 2 s later.
The default column bounds memory by the batch lane (--batch-threads, a quarter of --threads: at
most that many big messages are read and parsed at a time) and the document budget; "wide" lets
16 batches run at once, as one 16-thread pool did before, for comparison in the same run.
"""
from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from tagger._proto import tagger_pb2 as pb
from tagger._proto import tagger_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parent.parent
BASE = [sys.executable, "-m", "tagger", "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "1",
        "--metrics-port", "0", "--reload-interval", "0", "--max-message-mb", "64"]
SENTENCE = "قال وزير الخارجية إن المحادثات مع الوفد حول العقوبات والتعاون العسكري والاقتصادي مستمرة. "


def status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def run(name: str, extra: list[str], request: pb.TagBatchRequest, burst: int) -> dict[str, object]:
    proc = subprocess.Popen([*BASE, *extra], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    port = 0
    for line in proc.stderr:
        m = re.search(r"ready: .* on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    assert port, f"{name} did not start"
    try:
        idle = status_kb(proc.pid, "VmRSS")
        size = 128 << 20
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", size),
                                                                 ("grpc.max_receive_message_length", size)]) as ch:
            stub = pb_grpc.TopicTaggerStub(ch)
            t0 = time.monotonic()
            calls = [stub.TagBatch.future(request, timeout=600) for _ in range(burst)]
            codes = [c.code() for c in calls]
            seconds = time.monotonic() - t0
        time.sleep(2.0)
        return {"idle MB": idle / 1024, "peak MB": status_kb(proc.pid, "VmHWM") / 1024,
                "after MB": status_kb(proc.pid, "VmRSS") / 1024, "tagged": codes.count(grpc.StatusCode.OK),
                "refused": codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED),
                "other": sum(c not in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED) for c in codes),
                "seconds": seconds}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=12, help="TagBatch requests sent at once")
    parser.add_argument("--mb", type=float, default=40.0, help="size of each request in MB")
    args = parser.parse_args()
    per_doc = int(args.mb * 1024 * 1024 / 1000)
    text = (SENTENCE * (per_doc // len(SENTENCE.encode()) + 1)).encode()[:per_doc].decode("utf-8", "ignore")
    request = pb.TagBatchRequest(documents=[pb.Document(id=str(i), text=text) for i in range(1000)])
    columns = {"default (4 batch threads)": [],
               "wide (16 batch threads)": ["--batch-threads", "16", "--max-inflight-documents", "16000"]}
    results = {}
    for name, extra in columns.items():
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results[name] = run(name, extra, request, args.burst)
    print(f"\n{args.burst} TagBatch requests of {request.ByteSize() / 2**20:.1f} MB (1,000 documents) at once, "
          "one worker")
    print(f"{'':<14}" + "".join(f"{n:>28}" for n in results))
    for key in ("idle MB", "peak MB", "after MB", "tagged", "refused", "other", "seconds"):
        print(f"{key:<14}" + "".join(f"{r[key]:>28,.0f}" if isinstance(r[key], float) else f"{r[key]:>28}"
                                     for r in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
