"""Multi-label precision / recall / F1, computed exactly as ``shared/tools/score_topics.py`` does."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tagger.taxonomy import MISSION_TOPICS

__all__ = ["TopicMetrics", "Report", "score"]

#: macro-F1 averages topics with at least this much gold support, as the scorer does.
MACRO_MIN_SUPPORT = 10


@dataclass(frozen=True)
class TopicMetrics:
    topic: str
    precision: float
    recall: float
    f1: float
    support: int
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class Report:
    per_topic: tuple[TopicMetrics, ...]
    micro_f1: float
    macro_f1: float  # NaN when no topic has MACRO_MIN_SUPPORT gold articles: undefined, not 0
    mission_f1: float
    n_docs: int

    def f1(self, topic: str) -> float:
        return next(m.f1 for m in self.per_topic if m.topic == topic)

    def to_json(self) -> dict:
        return {
            "n_docs": self.n_docs,
            "micro_f1": round(self.micro_f1, 4),
            "macro_f1": None if math.isnan(self.macro_f1) else round(self.macro_f1, 4),
            "mission_f1": round(self.mission_f1, 4),
            "per_topic": {
                m.topic: {"precision": round(m.precision, 4), "recall": round(m.recall, 4), "f1": round(m.f1, 4),
                          "support": m.support}
                for m in self.per_topic
            },
        }

    def table(self) -> str:
        lines = [f"{'topic':13s} {'P':>5s} {'R':>5s} {'F1':>5s} {'support':>7s}"]
        for m in self.per_topic:
            lines.append(f"{m.topic:13s} {m.precision:5.2f} {m.recall:5.2f} {m.f1:5.2f} {m.support:7d}")
        lines.append(
            f"micro-F1 {self.micro_f1:.3f}  macro-F1 (support>={MACRO_MIN_SUPPORT}) {_value(self.macro_f1)}  "
            f"mission (diplomacy/military/sanctions) {self.mission_f1:.3f}"
        )
        return "\n".join(lines)


def _value(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def score(gold: Mapping[str, set[str]], pred: Mapping[str, set[str]], topics: Sequence[str]) -> Report:
    """Score predicted topic sets against gold sets. Every gold id needs a prediction."""
    missing = [i for i in gold if i not in pred]
    if missing:
        raise ValueError(f"{len(missing)} gold ids have no prediction, e.g. {missing[0]}")
    per, TP, FP, FN = [], 0, 0, 0
    for t in topics:
        tp = sum(t in gold[i] and t in pred[i] for i in gold)
        fp = sum(t not in gold[i] and t in pred[i] for i in gold)
        fn = sum(t in gold[i] and t not in pred[i] for i in gold)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        per.append(TopicMetrics(t, p, r, 2 * p * r / (p + r) if p + r else 0.0, tp + fn, tp, fp, fn))
        TP, FP, FN = TP + tp, FP + fp, FN + fn
    micro = 2 * TP / (2 * TP + FP + FN) if TP else 0.0
    big = [m.f1 for m in per if m.support >= MACRO_MIN_SUPPORT]
    mission = [m.f1 for m in per if m.topic in MISSION_TOPICS]
    return Report(
        tuple(per), micro, sum(big) / len(big) if big else math.nan, sum(mission) / len(mission) if mission else 0.0,
        len(gold),
    )
