"""Review store bench: next-item and decision latency with 1,000,000 items, on SQLite and PostgreSQL, and
import throughput of batch output (lines/s).

Goals (issue 16): next queue item p95 < 50 ms and record a decision p95 < 50 ms with 1M items in the
store, on both backends; import 100k batch lines >= 10k lines/s.

Side by side in the same run: the same operations on a store of 1,000 items (the baseline; the ratio
shows what a million items cost). Import is timed two ways on the same 100k corpus articles: batch
output made with ``tagger tag --keep title,text,url,outlet,published`` (the article travels in the
line; import reads one file) and batch output without ``--keep`` joined back to its input
(``--join``, the old path), each beside the rate of `tagger tag --output` (run_batch) making it.
Rates are of wall time and, as a machine-load-independent figure, per CPU-second of the importing
process (PostgreSQL's own server CPU is not in it).

PostgreSQL is a throw-away server started here (initdb/pg_ctl in a temporary folder, unix socket), as
in the tests. Each operation is one editor's request as the app makes it: ``Store.next_item`` (lease
the best open item not yet decided by this editor) then ``Store.decide``; four editors take turns.

Run from the repo root:

    .venv/bin/python bench/review_store.py                       # 1M items, 400 ops, 100k import lines
    .venv/bin/python bench/review_store.py --items 100000 --backends sqlite   # quicker
    .venv/bin/python bench/review_store.py --items 0                          # import only
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from review_pg import postgres_server  # noqa: E402

from tagger.artifacts import load_model  # noqa: E402
from tagger.batch import BatchConfig, run_batch  # noqa: E402
from tagger.paths import default_model_root, shared_dir  # noqa: E402
from tagger.review.importer import import_files  # noqa: E402
from tagger.review.store import Store  # noqa: E402

#: The fields batch output keeps for the review queue (what docs/review.md tells newsrooms to keep).
KEEP = ("title", "text", "url", "outlet", "published")
TOPICS = ("diplomacy", "military", "sanctions", "security", "politics", "economy", "energy", "humanitarian",
          "health", "technology", "sports", "culture")
TEXT = ("أعلنت وزارة الخارجية اليوم عن جولة جديدة من المحادثات بين الطرفين في العاصمة، وقال المتحدث إن "
        "الاجتماع سيبحث الملفات العالقة والتعاون الاقتصادي والأمني في المنطقة خلال الأشهر المقبلة. ") * 3


#: import processes preparing records for each import path (0: the importing process does everything)
WORKERS = {"join": 0, "keep": 0, "keep_w1": 1, "keep_w2": 2}

def synthetic_rows(start: int, n: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        scores = {t: round(rng.random(), 4) for t in TOPICS}
        chosen = [{"topic": t, "score": s} for t, s in sorted(scores.items(), key=lambda kv: -kv[1]) if s >= 0.5][:3]
        rows.append({
            "doc_id": f"bench-{i:08d}", "title": f"خبر رقم {i}", "text": TEXT, "tags": ["سياسة"], "outlet": "bench",
            "url": "", "published": "2026-12-01", "source": "import", "model_version": "arabic-news-topics/4",
            "predicted": chosen, "scores": scores, "evidence": None, "priority": rng.random() * 4,
            "signals": {}, "random_slice": rng.random() < 0.1, "reviews_needed": 2 if rng.random() < 0.05 else 1,
        })
    return rows


def fill(store: Store, n: int, seed: int = 0) -> float:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    step = 20_000
    for start in range(0, n, step):
        store.add_items(synthetic_rows(start, min(step, n - start), rng))
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - t0


def insert_paths(store: Store, n: int, step: int = 2000) -> dict[str, float]:
    """Rows per CPU-second of this process writing n queue rows in chunks of ``step``, one transaction
    each, two ways: SQLAlchemy Core ``insert(items)`` with a list of dicts (executemany; on PostgreSQL
    insertmanyvalues) and the store's own path (``Store.add_items``: driver executemany / COPY)."""
    from sqlalchemy import insert

    from tagger.review.schema import items
    from tagger.review.store import utcnow

    rng = random.Random(2)
    batches = [synthetic_rows(start, min(step, n - start), rng) for start in range(0, n, step)]
    out = {}
    for label in ("core", "store"):
        with store.engine.begin() as conn:
            conn.execute(items.delete())
        c0 = time.process_time()
        for rows in batches:
            if label == "core":
                fixed = {"reviews_done": 0, "is_open": True, "imported_at": utcnow()}
                with store.engine.begin() as conn:
                    conn.execute(insert(items), [r | fixed for r in rows])
            else:
                store.add_items(rows)
        out[label] = n / (time.process_time() - c0)
    return out


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def latencies(store: Store, ops: int, seed: int = 1) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    editors = [store.user_by_token(store.add_user(f"editor-{k}-{rng.random():.6f}")) for k in range(4)]
    nxt, dec = [], []
    for i in range(ops):
        user = editors[i % len(editors)]
        t0 = time.perf_counter()
        item = store.next_item(user)
        t1 = time.perf_counter()
        if item is None:
            raise RuntimeError("queue ran dry")
        topics = item.predicted_topics if rng.random() < 0.8 else [rng.choice(TOPICS)]
        store.decide(user, item.id, topics)
        t2 = time.perf_counter()
        nxt.append((t1 - t0) * 1000)
        dec.append((t2 - t1) * 1000)
    return nxt, dec


def corpus_articles(n: int) -> Iterator[dict]:
    """n articles from the shared corpus, cycled with fresh ids when n exceeds it."""
    path = shared_dir() / "corpus/ant-train.jsonl.xz"
    with lzma.open(path, "rt", encoding="utf-8") as f:
        base = [json.loads(line) for line in f]
    for i in range(n):
        row = dict(base[i % len(base)])
        row["id"] = f"{row['id']}#{i // len(base)}"
        yield row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--baseline-items", type=int, default=1_000)
    ap.add_argument("--ops", type=int, default=400, help="next-item + decision pairs timed per store")
    ap.add_argument("--import-lines", type=int, default=100_000)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--insert-rows", type=int, default=20_000,
                    help="rows written both ways (SQLAlchemy Core insert vs the store's driver path); 0 = skip")
    args = ap.parse_args()
    backends = args.backends.split(",")
    loaded = load_model(default_model_root())
    results = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        tmp_path = Path(tmp)
        pg = stack.enter_context(postgres_server()) if "postgresql" in backends else None

        def url_for(backend: str, name: str) -> str:
            if backend == "sqlite":
                return str(tmp_path / f"{name}.db")
            import psycopg
            from sqlalchemy.engine import make_url

            u = make_url(pg)
            with psycopg.connect(host=u.query["host"], port=int(u.query["port"]), user="postgres", dbname=u.database,
                                 autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            return u.set(database=name).render_as_string(hide_password=False)

        # -- import: real batch output of corpus articles, with the article kept in it or joined to its input
        src = tmp_path / "day.jsonl"
        with open(src, "w", encoding="utf-8") as f:
            for row in corpus_articles(args.import_lines):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        outputs: dict[str, tuple[Path, list[str], float]] = {}
        warm = tmp_path / "warm.jsonl"  # compiles the featuriser's kernels before anything is timed
        warm.write_text("".join(line for _, line in zip(range(200), open(src, encoding="utf-8"))), encoding="utf-8")
        run_batch(BatchConfig(inputs=(str(warm),), output=tmp_path / "warm.out.jsonl"), loaded)
        for path, keep, join in (("keep", KEEP, []), ("join", (), [str(src)])):
            out = tmp_path / f"day.{path}.jsonl"
            batch = run_batch(BatchConfig(inputs=(str(src),), output=out, keep=keep), loaded)
            outputs[path] = (out, join, batch.docs_per_second)
        outputs["keep_w1"] = outputs["keep_w2"] = outputs["keep"]

        for backend in backends:
            row: dict = {"backend": backend}
            for label, n in (("baseline", args.baseline_items), ("full", args.items)) if args.items else ():
                with Store(url_for(backend, f"q{label}"), topics=TOPICS, seed=0) as store:
                    row[f"{label}_fill_s"] = fill(store, n)
                    nxt, dec = latencies(store, args.ops)
                    row[label] = {"n": n, "next_p50": p(nxt, 50), "next_p95": p(nxt, 95), "dec_p50": p(dec, 50),
                                  "dec_p95": p(dec, 95)}
                    print(f"{backend} {n:>9,} items: next p95 {row[label]['next_p95']:.2f} ms, "
                          f"decision p95 {row[label]['dec_p95']:.2f} ms (filled in {row[f'{label}_fill_s']:.0f} s)",
                          file=sys.stderr)
            assert threading.active_count() == 1, "a thread is running: import --workers 1 would run inline"
            if args.insert_rows:
                with Store(url_for(backend, "ins"), topics=TOPICS) as store:
                    row["insert"] = insert_paths(store, args.insert_rows)
            for path, (out, join, batch_rate) in outputs.items():
                with Store(url_for(backend, f"imp{path}"), topics=loaded.model.topics) as store:
                    t0, c0 = time.perf_counter(), time.process_time()
                    imp = import_files(store, loaded, [str(out)], join=join, workers=WORKERS[path])
                    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
                assert imp.added == args.import_lines and imp.rejected == 0, imp.summary()
                row[f"import_{path}"] = {"rate": imp.read / secs, "s": secs, "cpu_rate": imp.read / cpu,
                                         "batch_rate": batch_rate}
                print(f"{backend} import ({path}): {imp.read / secs:,.0f} lines/s, {imp.read / cpu:,.0f} per CPU-s",
                      file=sys.stderr)
            results.append(row)

    print()
    print(f"review store bench: {args.items:,} items (baseline {args.baseline_items:,}), {args.ops} next+decide "
          f"pairs by 4 editors, import of {args.import_lines:,} batch lines")
    print()
    if args.items:
        print("| backend | items | next item p50 / p95 (ms) | decision p50 / p95 (ms) | p95 ratio vs baseline (next, "
              "decision) |")
        print("|---|---:|---:|---:|---:|")
    for r in results:
        for label in ("baseline", "full") if args.items else ():
            s = r[label]
            ratio = ("—" if label == "baseline" else
                     f"{s['next_p95'] / r['baseline']['next_p95']:.2f}x, {s['dec_p95'] / r['baseline']['dec_p95']:.2f}x")
            print(f"| {r['backend']} | {s['n']:,} | {s['next_p50']:.2f} / {s['next_p95']:.2f} | "
                  f"{s['dec_p50']:.2f} / {s['dec_p95']:.2f} | {ratio} |")
    print()
    print("| backend | batch output imported | import lines/s | import seconds | lines per CPU-second of the "
          "importing process (workers not counted) | `tagger tag --output` lines/s making it | import vs join path |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        for path, label in (("join", "without --keep, + --join input (old path)"),
                            ("keep", f"--keep {','.join(KEEP)} (one file)"),
                            ("keep_w1", "the same, import --workers 1 (a worker prepares, this process writes)"),
                            ("keep_w2", "the same, import --workers 2 (two workers prepare, this process writes)")):
            s = r[f"import_{path}"]
            print(f"| {r['backend']} | {label} | {s['rate']:,.0f} | {s['s']:.1f} | {s['cpu_rate']:,.0f} | "
                  f"{s['batch_rate']:,.0f} | {s['rate'] / r['import_join']['rate']:.2f}x |")
    if args.insert_rows:
        print()
        print(f"| backend | {args.insert_rows:,} queue rows written, chunks of 2,000 | rows per CPU-second of this "
              "process | vs Core |")
        print("|---|---|---:|---:|")
        for r in results:
            ins = r["insert"]
            print(f"| {r['backend']} | SQLAlchemy Core insert(items), list of dicts | {ins['core']:,.0f} | 1.00x |")
            print(f"| {r['backend']} | Store.add_items (driver executemany / COPY) | {ins['store']:,.0f} | "
                  f"{ins['store'] / ins['core']:.2f}x |")
    print()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end of the run")
    print("goals: next p95 < 50 ms, decision p95 < 50 ms at 1M items; import >= 10,000 lines/s")
    print(f"command: .venv/bin/python bench/review_store.py --items {args.items} --ops {args.ops} "
          f"--import-lines {args.import_lines} --backends {args.backends} --insert-rows {args.insert_rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
