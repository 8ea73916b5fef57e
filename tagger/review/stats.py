"""Quality figures from editors' standing decisions: model-vs-editor agreement per topic and per model
version (overall and on the random slice, the unbiased figure), over time, editor throughput,
inter-editor agreement on the double-reviewed sample, and the queue's size."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tagger.review.store import Store

__all__ = ["compute_stats", "topic_agreement"]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def topic_agreement(pairs: Iterable[tuple[Sequence[str], Sequence[str]]], topics: Sequence[str]) -> dict[str, dict]:
    """Per topic over (predicted, decided) pairs: agreement (same yes/no), precision and recall of the
    prediction against the editor's set, and the number of decisions."""
    counts: dict[str, Counter] = {t: Counter() for t in topics}
    for predicted, decided in pairs:
        p, d = set(predicted), set(decided)
        for t in topics:
            counts[t][("t" if (t in p) == (t in d) else "f") + ("p" if t in p else "n")] += 1
    out = {}
    for t, c in counts.items():
        n = sum(c.values())
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        out[t] = {"n": n, "agreement": _ratio(c["tp"] + c["tn"], n), "precision": _ratio(tp, tp + fp),
                  "recall": _ratio(tp, tp + fn)}
    return out


def _summary(rows: Sequence[Mapping[str, Any]], topics: Sequence[str]) -> dict[str, Any]:
    n = len(rows)
    exact = sum(set(r["predicted"]) == set(r["topics"]) for r in rows)
    agree = sum((t in r["predicted"]) == (t in r["topics"]) for r in rows for t in topics)
    return {"n": n, "exact_agreement": _ratio(exact, n), "topic_agreement": _ratio(agree, n * len(topics))}


def _topics(store: Store, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if store.topics is not None:
        return list(store.topics)
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys([*r["predicted"], *r["topics"]]))
    return list(seen)


def compute_stats(store: Store) -> dict[str, Any]:
    rows = store.standing_decisions(articles=False)
    topics = _topics(store, rows)
    names = store.user_names()
    random_rows = [r for r in rows if r["random_slice"]]
    per_version: dict[str, list] = defaultdict(list)
    per_day: dict[tuple[str, str], list] = defaultdict(list)
    throughput: Counter = Counter()
    for r in rows:
        per_version[r["model_version"]].append(r)
        day = r["created_at"].date().isoformat()
        per_day[(day, r["model_version"])].append(r)
        throughput[(names.get(r["user_id"], str(r["user_id"])), day)] += 1
    by_item: dict[int, list] = defaultdict(list)
    for r in rows:
        if r["reviews_needed"] > 1:
            by_item[r["item_id"]].append(r)
    pairs = [(a["topics"], b["topics"]) for group in by_item.values() if len(group) >= 2 for a, b in [group[:2]]]
    inter = topic_agreement(pairs, topics)
    return {
        "queue": store.queue_counts(),
        "decisions": len(rows),
        "topics": topics,
        "per_topic": topic_agreement(((r["predicted"], r["topics"]) for r in rows), topics),
        "per_topic_random_slice": topic_agreement(((r["predicted"], r["topics"]) for r in random_rows), topics),
        "per_model_version": {
            v: _summary(vs, topics) | {"random_slice": _summary([r for r in vs if r["random_slice"]], topics)}
            for v, vs in sorted(per_version.items())
        },
        "over_time": [{"day": day, "model_version": v} | _summary(vs, topics)
                      for (day, v), vs in sorted(per_day.items())],
        "throughput": [{"editor": e, "day": day, "decisions": n} for (e, day), n in sorted(throughput.items())],
        "inter_editor": {
            "items": len(pairs),
            "exact_agreement": _ratio(sum(set(a) == set(b) for a, b in pairs), len(pairs)),
            "per_topic": {t: v["agreement"] for t, v in inter.items()},
        },
    }
