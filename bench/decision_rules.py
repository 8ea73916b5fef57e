#!/usr/bin/env python3
"""Decision rules on saved out-of-outlet scores: does a rule for empty answers or second topics help
on outlets the model never saw? No retraining: it reads the pooled leave-one-outlet-out scores that
``bench/outlet_cv.py --scores-out DIR`` saves (each article scored by a model that never saw its
outlet, with that model's own thresholds) and re-decides them.

    python bench/outlet_cv.py --seeds 0,1,2 --scores-out runs/scores
    python bench/decision_rules.py runs/scores/defaults-seed*.npz

Rules (each applied on top of the per-topic thresholds):
- ``empty→best if ≥ a·t``: an article with no topic gets its best topic when that score reaches ``a`` times
  the topic's threshold (the error shape: about one article in twenty gets no topic, while almost every
  gold article has one);
- ``2nd if ≥ b·t``: an article with exactly one topic also gets its second best when that score reaches
  ``b`` times its threshold (the second/third topics are the most-missed ones).
It also prints micro-F1 by article length (the short-item weakness), from the gold file's text.
"""
from __future__ import annotations

import argparse
import json
import lzma
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tagger.paths import shared_dir  # noqa: E402


def micro_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float((pred & truth).sum())
    return 2 * tp / (pred.sum() + truth.sum()) if tp else 0.0


def decide(scores: np.ndarray, thr: np.ndarray, empty_a: float | None = None, second_b: float | None = None) -> np.ndarray:
    pred = scores >= thr
    ratio = scores / thr
    order = np.argsort(-ratio, axis=1, kind="stable")
    rows = np.arange(len(scores))
    if empty_a is not None:
        empty = ~pred.any(axis=1)
        best = order[:, 0]
        take = empty & (ratio[rows, best] >= empty_a)
        pred[rows[take], best[take]] = True
    if second_b is not None:
        one = pred.sum(axis=1) == 1
        second = order[:, 1]
        take = one & (ratio[rows, second] >= second_b)
        pred[rows[take], second[take]] = True
    return pred


RULES: list[tuple[str, dict]] = [("thresholds only (as served)", {})] + [
    (f"empty→best if ≥ {a:g}·t", {"empty_a": a}) for a in (0.0, 0.5, 0.7, 0.85)] + [
    (f"2nd if ≥ {b:g}·t", {"second_b": b}) for b in (0.6, 0.75, 0.9)] + [
    ("empty→best ≥ 0.7·t + 2nd ≥ 0.75·t", {"empty_a": 0.7, "second_b": 0.75})]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="npz files saved by outlet_cv.py --scores-out (one per seed)")
    ap.add_argument("--gold", type=Path, default=shared_dir() / "gold/train.jsonl.xz")
    args = ap.parse_args()
    length = {}
    with lzma.open(args.gold, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            length[r["id"]] = len(r.get("title") or "") + len(r.get("text") or "")
    runs = [np.load(p) for p in args.runs]
    names = [p.name for p in args.runs]
    print(f"{'rule':38s} " + " ".join(f"{n[-12:]:>12s}" for n in names) + f" {'mean':>7s}")
    base = None
    for label, kw in RULES:
        vals = [micro_f1(decide(r["scores"], r["thresholds"], **kw), r["truth"]) for r in runs]
        mean = float(np.mean(vals))
        base = mean if base is None else base
        print(f"{label:38s} " + " ".join(f"{v:12.4f}" for v in vals) + f" {mean:7.4f} ({mean - base:+.4f})")
    print("\nas served, by article length (title + text characters):")
    edges = [0, 700, 1500, 3000, 10**9]
    for lo, hi in zip(edges, edges[1:]):
        vals = []
        n = 0
        for r in runs:
            keep = np.array([lo <= length[i] < hi for i in r["ids"]])
            n = int(keep.sum())
            vals.append(micro_f1(decide(r["scores"][keep], r["thresholds"][keep]), r["truth"][keep]))
        empty = float(np.mean([(~decide(r["scores"], r["thresholds"]).any(axis=1)
                                & np.array([lo <= length[i] < hi for i in r["ids"]])).sum() for r in runs]))
        print(f"  {lo:>5d}-{hi if hi < 10**9 else '':<5} chars: {n:5d} articles, micro-F1 "
              + " ".join(f"{v:.4f}" for v in vals) + f"; no topic: {empty:.1f} an run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
