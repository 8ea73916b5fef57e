#!/usr/bin/env python3
"""Choose training settings the way the service is used: on outlets the model never saw.

For each candidate setting, leave-one-outlet-out over the gold training articles (Sky News Arabia,
Al Arabiya, CNN Arabic): train on the other outlets' gold and corpus articles (the held-out outlet's
corpus articles leave the weak data too), with the training recipe's own cross-validated
thresholds, and tag the held-out outlet's gold articles. Every gold article is then predicted once
by a model that never saw its outlet; the pooled scores are the selection criterion. Dev (BBC
Arabic) is printed beside them for the record only: it takes no part in the choice.

The label files `tagger train` reads (training/labels/: corpus articles annotated by id) train with
the gold, and leave a fold with their outlet like the corpus does; only the 2,100 gold articles are
scored. ``--labels none`` scores the recipe without them.

    python bench/outlet_cv.py                               # the shipped defaults
    python bench/outlet_cv.py --set C=100 --set weak_weight=0.5 --set self_train_hi=0.8,self_train_lo=0.2
    python bench/outlet_cv.py --seeds 0,1,2 --skip-defaults \
        --arm random=training/labels/ant-train-annotations.jsonl,random-1000.jsonl \
        --arm uncertain=training/labels/ant-train-annotations.jsonl,uncertain-1000.jsonl

Each ``--set`` is one candidate (comma-separated TrainConfig fields); the defaults run first unless
``--skip-defaults``. Each ``--arm NAME=FILE[,FILE]`` is one candidate set of label files (the
defaults' settings); ``--seeds`` runs every candidate once per seed. ``--scores-out DIR`` saves each
run's pooled out-of-outlet scores (``<candidate>-seed<N>.npz``: ids, topics, scores, each article's
fold thresholds, truth) for decision-rule studies that need no retraining.
About 3-4 minutes per candidate and seed on 2 cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tagger.metrics import score  # noqa: E402
from tagger.paths import shared_dir  # noqa: E402
from tagger.taxonomy import default_taxonomy  # noqa: E402
from tagger.training.assemble import assemble_training_data, choose_label_files  # noqa: E402
from tagger.training.data import read_gold  # noqa: E402
from tagger.training.fit import TrainConfig, fit_model  # noqa: E402
from tagger.training.pipeline import predict_topics  # noqa: E402
from tagger.training.weak import load_keyword_rules, load_section_rules  # noqa: E402


def parse_setting(text: str) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out: dict = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown TrainConfig field {key!r}; known: {', '.join(fields)}")
        default = getattr(TrainConfig(), key)
        out[key] = (value.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(value)
    return out


def _scores(model, articles) -> dict[str, list[float]]:
    """Every topic's score for each article, through the one predict path."""
    from tagger.artifacts import LoadedModel
    from tagger.document import Document
    from tagger.tagger import Tagger

    tagger = Tagger(LoadedModel(model, {"name": "cv", "version": "fold"}, Path(".")))
    results = tagger.tag_many([Document(id=a.id, title=a.title, body=a.body) for a in articles])
    return {r.id: [r.scores[t] for t in model.topics] for r in results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=shared_dir())
    ap.add_argument("--set", dest="settings", action="append", default=[], help="a candidate: field=value[,field=value]")
    ap.add_argument("--skip-defaults", action="store_true", help="do not run the defaults first")
    ap.add_argument("--labels", action="append", default=None,
                    help="label files to train with, as `tagger train --labels` (default: training/labels/*.jsonl); "
                         "'none' for none")
    ap.add_argument("--arm", dest="arms", action="append", default=[], metavar="NAME=FILE[,FILE]",
                    help="a candidate set of label files, trained with the default settings; repeatable")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; every candidate runs once per seed")
    ap.add_argument("--scores-out", type=Path, default=None, help="save each run's pooled out-of-outlet scores here")
    ap.add_argument("--no-dev", action="store_true",
                    help="skip the full-data fit that only serves dev's record column (a quarter of the time)")
    args = ap.parse_args()
    tx = default_taxonomy()
    topics = tx.ids
    corpus_file = args.shared / "corpus/ant-train.jsonl.xz"
    seeds = [int(x) for x in args.seeds.split(",")]
    # The same choice `tagger train` makes: the shipped label files, the given ones, or none.
    labels = choose_label_files(args.labels, corpus_file, corpus_file)
    scored = read_gold(args.shared / "gold/train.jsonl.xz", tx)
    dev = list(read_gold(args.shared / "gold/dev.jsonl", tx))

    def assemble(label_files):
        data = assemble_training_data(gold=[args.shared / "gold/train.jsonl.xz"], corpus=corpus_file,
                                      labels=label_files, taxonomy=tx)
        return data.gold, data.unlabelled  # gold: the scored articles, then the label files' articles

    gold, corpus = assemble(labels)
    outlet_of = {a.id: a.outlet for a in gold}
    outlets = sorted(set(outlet_of.values()))
    if len(outlets) < 2 or "" in outlets:
        raise SystemExit(f"need every gold article's outlet, got {outlets}")
    kw, sec = load_keyword_rules(tx), load_section_rules(tx)
    truth = {a.id: set(a.topics or ()) for a in scored}
    dev_truth = {a.id: set(a.topics or ()) for a in dev}

    print(f"gold: {len(scored)} articles from "
          f"{', '.join(f'{o} ({sum(outlet_of[a.id] == o for a in scored)})' for o in outlets)}, scored; "
          f"label files: {len(gold) - len(scored)} more to train on ({', '.join(p.name for p in labels) or 'none'}); "
          f"dev: {len(dev)} (record only)\n")
    head = f"{'candidate':44s} {'LOOO µ':>7s} {'macro':>6s} {'mission':>7s} " + " ".join(f"{t[:5]:>5s}" for t in topics) \
        + f" {'dev µ':>6s} {'dev san':>7s} {'min':>5s}"
    print(head)
    print("-" * len(head))
    candidates = [(setting or "defaults", parse_setting(setting), None)
                  for setting in ([] if args.skip_defaults else [""]) + args.settings]
    for arm in args.arms:
        name, _, files = arm.partition("=")
        candidates.append((f"labels: {name}", {}, [Path(f) for f in files.split(",") if f]))
    if args.scores_out:
        args.scores_out.mkdir(parents=True, exist_ok=True)
    for name, changes, arm_labels in candidates:
        arm_gold, arm_corpus = (gold, corpus) if arm_labels is None else assemble(arm_labels)
        for seed in seeds:
            cfg = dataclasses.replace(TrainConfig(), **({"seed": seed} | changes))
            t0 = time.perf_counter()
            pred: dict[str, set[str]] = {}
            oof, oof_thresholds = {}, {}
            for held in outlets:
                train_gold = [a for a in arm_gold if a.outlet != held]
                train_corpus = [a for a in arm_corpus if a.outlet != held]
                res = fit_model(train_gold, train_corpus, tx, cfg, kw, sec, log=lambda *a: None)
                held_out = [a for a in scored if outlet_of[a.id] == held]
                pred.update(predict_topics(res.model, held_out))
                if args.scores_out:
                    oof.update(_scores(res.model, held_out))
                    oof_thresholds.update({a.id: res.model.thresholds.tolist() for a in held_out})
            r = score(truth, pred, topics)
            dev_cols = f"{'-':>6s} {'-':>7s}"
            if not args.no_dev:
                full = fit_model(arm_gold, arm_corpus, tx, cfg, kw, sec, log=lambda *a: None)
                d = score(dev_truth, predict_topics(full.model, dev), topics)
                san = next(m.f1 for m in d.per_topic if m.topic == "sanctions")
                dev_cols = f"{d.micro_f1:6.4f} {san:7.3f}"
            label = f"{name}, seed {seed}" if len(seeds) > 1 or seed else name
            print(f"{label:44s} {r.micro_f1:7.4f} {r.macro_f1:6.3f} {r.mission_f1:7.3f} "
                  + " ".join(f"{m.f1:5.2f}" for m in r.per_topic)
                  + f" {dev_cols} {(time.perf_counter() - t0) / 60:5.1f}", flush=True)
            if args.scores_out:
                ids = sorted(oof)
                np.savez_compressed(
                    args.scores_out / f"{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}-seed{seed}.npz",
                    ids=np.array(ids), topics=np.array(topics), scores=np.array([oof[i] for i in ids]),
                    thresholds=np.array([oof_thresholds[i] for i in ids]),
                    truth=np.array([[tp in truth[i] for tp in topics] for i in ids]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
