"""fastText side of bench/batch.py; runs in its own venv (fasttext-wheel needs numpy < 2).

Standalone on purpose (standard library + fasttext only): it must not import tagger, whose numpy is
2.x. Trains a supervised multi-label model (one-vs-all loss, word 1-2 grams) on the given fastText
training file (not timed), then times what a data team would run: read the JSONL, build fastText's
one-line input, ``predict(k=-1, threshold=0.5)`` in batches, write one JSON line per document.
Prints one JSON object with the timing.
"""
from __future__ import annotations

import argparse
import json
import time

import fasttext


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True, help="fastText training file (__label__x … text)")
    ap.add_argument("--input", required=True, help="JSONL with id/title/text")
    ap.add_argument("--output", required=True)
    ap.add_argument("--limit", type=int, default=0, help="stop after this many documents (0 = all)")
    ap.add_argument("--threads", type=int, default=2, help="training threads (prediction is one thread)")
    ap.add_argument("--word-ngrams", type=int, default=2, help="1 = fastText's default, 2 = word 1-2 grams")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs; the fastest counts")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = fasttext.train_supervised(args.train, wordNgrams=args.word_ngrams, loss="ova", thread=args.threads, verbose=0)
    train_s = time.perf_counter() - t0

    def once() -> tuple[int, float, float]:
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        with open(args.input, encoding="utf-8") as f, open(args.output, "w", encoding="utf-8") as out:
            batch: list[tuple[str, str]] = []

            def flush() -> None:
                labels, probs = model.predict([t for _, t in batch], k=-1, threshold=0.5)
                out.write("".join(
                    json.dumps({"id": i, "topics": [{"topic": lab[9:], "score": round(float(p), 4)}
                                                    for lab, p in zip(ls, ps)]}, ensure_ascii=False) + "\n"
                    for (i, _), ls, ps in zip(batch, labels, probs)
                ))
                batch.clear()

            for line in f:
                obj = json.loads(line)
                # fastText reads one line per document: newlines inside the text must go.
                batch.append((obj["id"], (obj.get("title", "") + " " + obj["text"]).replace("\n", " ")))
                n += 1
                if len(batch) == 1000:
                    flush()
                if args.limit and n >= args.limit:
                    break
            if batch:
                flush()
        return n, time.perf_counter() - t0, time.process_time() - c0

    n, seconds, cpu = min((once() for _ in range(max(1, args.repeat))), key=lambda r: r[2])
    print(json.dumps({"docs": n, "seconds": seconds, "cpu": cpu, "train_seconds": train_s, "labels": len(model.labels)}))


if __name__ == "__main__":
    main()
