#!/usr/bin/env python3
"""Memory of a `tagger serve` pod's processes, idle and under TagBatch load: the numbers behind the
Deployment's resources (deploy/kubernetes/deployment.yaml, docs/deploy.md).

    .venv/bin/python bench/serve_memory.py                      # ~30 s
    .venv/bin/python bench/serve_memory.py --workers 2 --clients 8 --batches 40

Starts ``tagger serve --workers N`` on 127.0.0.1 (OS-assigned port, no metrics port), reads each
process's RSS, peak RSS (VmHWM) and proportional set size (Pss: shared pages split between the
processes sharing them, so the Pss column adds up to what the pod's memory cgroup is charged), then
sends ``--clients`` concurrent TagBatch streams of 100 corpus articles each and reads them again.
"""
from __future__ import annotations

import argparse
import json
import lzma
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def memory(pid: int) -> dict[str, float]:
    """RSS, peak RSS and Pss of one process, in MB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1]) / 1024
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--batches", type=int, default=20, help="TagBatch calls per client")
    p.add_argument("--corpus", type=Path, default=REPO.parent / "shared/corpus/ant-train.jsonl.xz")
    args = p.parse_args()

    from serve_process import ServeProcess  # tests/serve_process.py: the server as the tests start it

    from tagger.client import TaggerClient

    with lzma.open(args.corpus, "rt", encoding="utf-8") as f:
        docs = [{"id": a["id"], "title": a["title"], "text": a["text"]}
                for _, a in zip(range(100 * args.batches), map(json.loads, f))]
    rows = []
    with ServeProcess("--port", "0", "--workers", str(args.workers), "--metrics-port", "0") as server:
        parent = server.proc.pid
        workers = [int(x) for x in subprocess.run(["pgrep", "-P", str(parent)], capture_output=True,
                                                  text=True).stdout.split()]
        pids = [("parent", parent)] + [(f"worker {i + 1}", pid) for i, pid in enumerate(workers)]
        idle = {name: memory(pid) for name, pid in pids}

        def load() -> None:
            with TaggerClient(server.target) as client:
                for i in range(args.batches):
                    client.tag_batch(docs[100 * i: 100 * (i + 1)])

        threads = [threading.Thread(target=load) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        busy = {name: memory(pid) for name, pid in pids}
    print(f"tagger serve --workers {args.workers}: memory in MB, idle and after {args.clients} clients x "
          f"{args.batches} TagBatch of 100 articles\n")
    print(f"{'process':<10}{'RSS idle':>10}{'Pss idle':>10}{'RSS busy':>10}{'peak RSS':>10}{'Pss busy':>10}")
    for name, _ in pids:
        a, b = idle[name], busy[name]
        rows.append(b)
        print(f"{name:<10}{a['VmRSS']:>10.0f}{a['Pss']:>10.0f}{b['VmRSS']:>10.0f}{b['VmHWM']:>10.0f}{b['Pss']:>10.0f}")
    print(f"{'pod':<10}{sum(idle[n]['VmRSS'] for n, _ in pids):>10.0f}{sum(idle[n]['Pss'] for n, _ in pids):>10.0f}"
          f"{sum(r['VmRSS'] for r in rows):>10.0f}{sum(r['VmHWM'] for r in rows):>10.0f}{sum(r['Pss'] for r in rows):>10.0f}")
    print("\nPss is what the pod's memory cgroup is charged (shared pages counted once); the RSS sum counts "
          "them once per process, an upper bound.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
