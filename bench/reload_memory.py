#!/usr/bin/env python3
"""Resident memory across repeated model reloads (issue 15, defect 1): today's featuriser against the
old reference cycle, side by side in one run.

    .venv/bin/python bench/reload_memory.py                 # 50 reloads per column, ~1-2 minutes
    .venv/bin/python bench/reload_memory.py --reloads 20 --docs 100

Each column runs in a fresh Python process that does what a serving worker does on a hot reload:
``load_model`` of the shipped model, a ``Tagger`` around it, the reload's warm-up (tag ``--docs``
corpus articles, which fills the featuriser's word table), then the new Tagger replaces the old one
(one reference assignment) and the old model is dropped. The garbage collector stays on with its
default settings, as in the server. RSS (``/proc/self/statm``) is read after the first load, after
the first reload and after the last one. A reload holds two models for a moment (the new one is
built while the old one serves), so the first reload raises the high-water mark once by about one
model (~25 MB) and the allocator keeps that room for the next reload: "growth" is counted from the
first reload to the last, "total" from the first load.

- ``fixed``: the featuriser as shipped: its word table's resolvers are plain functions of the
  lookup tables, so the last reference to an old model frees it at once;
- ``old cycle``: the same code with the reference cycle the featuriser used to have put back (its
  word table holds a bound method of the featuriser), so an old model is freed only when a full
  collection happens to run.

The goal (issue 15): RSS growth over 50 reloads < 20 MB with ``fixed``.
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = ("fixed", "old cycle")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one_mode(mode: str, reloads: int, n_docs: int, corpus: Path) -> dict:
    """Run ``reloads`` reloads in this process; return RSS numbers."""
    from tagger.artifacts import load_model
    from tagger.document import from_fields
    from tagger.paths import default_model_root
    from tagger.tagger import Tagger

    with lzma.open(corpus, "rt", encoding="utf-8") as f:
        docs = [from_fields(id=str(i), title=a["title"], text=a["text"])
                for i, a in zip(range(n_docs), map(json.loads, f))]
    root = default_model_root()

    def reload() -> Tagger:
        loaded = load_model(root)
        if mode == "old cycle":
            feat = loaded.model.featurizer
            # The old shape: the featuriser's own word table holds a bound method of the featuriser.
            feat._word_ids._resolve_owner = feat.rows_documents
        tagger = Tagger(loaded)
        tagger.tag_many(docs)  # the reload's warm-up
        return tagger

    tagger = reload()
    loaded_mb = rss_mb()
    first = peak = 0.0
    for i in range(reloads):
        tagger = reload()  # the swap: the old Tagger (and its model) loses its last reference here
        peak = max(peak, rss_mb())
        if i == 0:
            first = rss_mb()
    end = rss_mb()
    del tagger
    return {"mode": mode, "loaded": loaded_mb, "first": first, "end": end, "peak": peak,
            "growth": end - first, "total": end - loaded_mb}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reloads", type=int, default=50)
    p.add_argument("--docs", type=int, default=200, help="articles tagged after each load (the warm-up)")
    p.add_argument("--corpus", type=Path, default=REPO.parent / "shared/corpus/ant-train.jsonl.xz")
    p.add_argument("--mode", choices=MODES, default=None, help=argparse.SUPPRESS)  # one column, in a child
    args = p.parse_args()
    if args.mode:
        print(json.dumps(one_mode(args.mode, args.reloads, args.docs, args.corpus)))
        return 0
    rows = []
    for mode in MODES:
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--reloads", str(args.reloads), "--docs", str(args.docs),
             "--corpus", str(args.corpus)], check=True, capture_output=True, text=True,
        ).stdout
        rows.append(json.loads(out.splitlines()[-1]))
    print(f"{args.reloads} reloads of the shipped model, {args.docs} documents tagged after each (RSS, MB)\n")
    print(f"{'':<12}{'load':>8}{'reload 1':>10}{f'reload {args.reloads}':>11}{'peak':>8}"
          f"{'growth':>9}{'per reload':>12}{'total':>8}")
    for r in rows:
        print(f"{r['mode']:<12}{r['loaded']:>8.0f}{r['first']:>10.0f}{r['end']:>11.0f}{r['peak']:>8.0f}"
              f"{r['growth']:>9.1f}{r['growth'] / max(args.reloads - 1, 1):>12.2f}{r['total']:>8.1f}")
    fixed, old = rows
    print(f"\ngrowth, old cycle / fixed: {old['growth']:.1f} / {fixed['growth']:.1f} MB; "
          f"total {old['total']:.1f} / {fixed['total']:.1f} MB")
    print(f"goal: growth < 20 MB over {args.reloads} reloads -> {'met' if fixed['growth'] < 20 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
