#!/usr/bin/env python3
"""Train and score, side by side on dev gold: keyword rules, the plain pipeline on the labelled
articles alone, the full recipe without the label files, a fresh full training run, and the shipped
model. Reports training times.

    python bench/train_eval.py [--shared ../shared] [--seed 0] [--ablations]

Dev gold is only scored, never fitted on. The fresh run uses the shipped model's seed, so its
metrics should equal the shipped model's (determinism check, printed).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagger.artifacts import load_model  # noqa: E402
from tagger.metrics import Report, score  # noqa: E402
from tagger.paths import default_model_root, shared_dir  # noqa: E402
from tagger.taxonomy import default_taxonomy  # noqa: E402
from tagger.text import document_tokens, tokenize  # noqa: E402
from tagger.training.assemble import assemble_training_data, default_label_files  # noqa: E402
from tagger.training.data import read_articles, read_gold  # noqa: E402
from tagger.training.fit import TrainConfig, fit_model  # noqa: E402
from tagger.training.pipeline import evaluate_model  # noqa: E402
from tagger.training.weak import load_keyword_rules, load_section_rules  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--seed", type=int, default=None, help="default: the shipped model's seed")
    ap.add_argument("--ablations", action="store_true",
                    help="also train without each weak-label source (self-training, sections, keywords)")
    args = ap.parse_args()
    tx = default_taxonomy()
    topics = tx.ids
    shipped = load_model(default_model_root())
    seed = shipped.manifest.get("seed", 0) if args.seed is None else args.seed

    t = time.perf_counter()
    gold_file, corpus_file = args.shared / "gold/train.jsonl.xz", args.shared / "corpus/ant-train.jsonl.xz"
    gold = read_gold(gold_file, tx)  # the 2,100 gold training articles
    dev = read_gold(args.shared / "gold/dev.jsonl", tx)
    # What `tagger train` trains on: gold + the label files' corpus articles, and the rest of the corpus.
    data = assemble_training_data(gold=[gold_file], corpus=corpus_file, labels=default_label_files(), taxonomy=tx)
    corpus = list(read_articles(corpus_file))  # for the recipe without the label files
    read_s = time.perf_counter() - t
    truth = {a.id: set(a.topics or ()) for a in dev}
    rows: list[tuple[str, Report, float | None]] = []

    rules = load_keyword_rules(tx)
    kw = {a.id: {t for t, f in zip(topics, rules.fire(document_tokens(a.title, a.body))) if f} for a in dev}
    rows.append(("keyword rules", score(truth, kw, topics), None))

    t = time.perf_counter()
    plain = make_pipeline(
        TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2), min_df=2,
                        sublinear_tf=True),
        OneVsRestClassifier(LogisticRegression(C=10, max_iter=1000)),
    )
    Y = np.array([[t in a.topics for t in topics] for a in gold], dtype=int)
    plain.fit([a.title + "\n" + a.body for a in gold], Y)
    plain_s = time.perf_counter() - t
    P = plain.predict([a.title + "\n" + a.body for a in dev])
    rows.append(("plain pipeline, labelled only", score(truth, {a.id: {t for t, p in zip(topics, P[i]) if p} for i, a in enumerate(dev)}, topics), plain_s))

    t = time.perf_counter()
    unlabelled_only = fit_model(gold, corpus, tx, TrainConfig(seed=seed), load_keyword_rules(tx),
                                load_section_rules(tx), log=lambda *a: None)
    rows.append(("full pipeline without the label files", evaluate_model(unlabelled_only.model, dev),
                 time.perf_counter() - t))
    t = time.perf_counter()
    fresh = fit_model(data.gold, data.unlabelled, tx, TrainConfig(seed=seed), load_keyword_rules(tx),
                      load_section_rules(tx), log=lambda *a: None)
    fresh_s = time.perf_counter() - t
    rows.append((f"full pipeline, fresh run (seed {seed})", evaluate_model(fresh.model, dev), fresh_s))
    rows.append((f"shipped model {shipped.version}", evaluate_model(shipped.model, dev), None))
    if args.ablations:
        for name, change in [("without self-training", {"use_self_training": False}),
                             ("without section rules", {"use_sections": False}),
                             ("without keyword rules", {"use_keywords": False}),
                             ("gold only (no weak labels)", {"weak_weight": 0.0})]:
            t = time.perf_counter()
            r = fit_model(data.gold, data.unlabelled, tx, TrainConfig(seed=seed, **change), load_keyword_rules(tx),
                          load_section_rules(tx), log=lambda *a: None)
            rows.append((name, evaluate_model(r.model, dev), time.perf_counter() - t))

    print(f"dev gold: {len(dev)} BBC Arabic articles; corpus read in {read_s:.1f}s (not included below)\n")
    head = f"{'system':40s} {'micro':>6s} {'macro':>6s} {'mission':>7s} " + " ".join(f"{t[:5]:>5s}" for t in topics) + f" {'train s':>8s}"
    print(head)
    print("-" * len(head))
    for name, r, secs in rows:
        print(f"{name:40s} {r.micro_f1:6.3f} {r.macro_f1:6.3f} {r.mission_f1:7.3f} "
              + " ".join(f"{m.f1:5.2f}" for m in r.per_topic) + f" {secs if secs is None else round(secs, 1)!s:>8s}")
    same = rows[4][1].to_json() == rows[3][1].to_json()
    print(f"\nfresh run reproduces the shipped model's dev metrics: {'yes' if same else 'NO'}")
    print(f"full training time (featurise + weak labels + CV thresholds + fit, 2 threads): {fresh_s:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
