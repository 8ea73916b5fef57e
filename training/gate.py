"""The promotion gate: a candidate model against the live one on gold sets that were never trained on.

Both models tag each gate gold set through the one predict path; the candidate is promoted only if
micro-F1 and every topic with enough support are within tolerance of the live model (a topic fails
only with a real, paired loss of articles, not a small-sample wobble). A refusal names each reason.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tagger.metrics import Report, score
from tagger.model import TopicModel
from tagger.training.data import Article
from tagger.training.pipeline import predict_topics

__all__ = ["Comparison", "Decision", "GatePolicy", "TopicGate", "compare"]


@dataclass(frozen=True)
class GatePolicy:
    """How much worse than the live model a candidate may be and still ship.

    ``tol`` bounds the drop in micro-F1 (over the topics both models have); ``topic_tol`` the drop in
    F1 of each topic with at least ``min_support`` articles in the gate gold set (below that, one
    article moves F1 by many points, so the topic is reported but not gated). A topic the live model
    lacks cannot be compared: it is gated on an absolute ``new_topic_min_f1`` when the gold set has
    enough of it, and reported otherwise.

    A topic is only "worse" when its F1 drop exceeds ``topic_tol`` *and* the candidate gets at least
    ``min_net_losses`` more articles wrong on that topic than the live model (articles it gets right
    and live gets wrong are subtracted). On a few hundred gold articles a 2-3 article wobble moves a
    topic's F1 by 5-7 points in either direction; this paired count keeps such noise from blocking a
    candidate that is better overall, while a real regression (many articles lost) still fails.
    """

    tol: float = 0.01
    topic_tol: float = 0.05
    min_support: int = 10
    new_topic_min_f1: float = 0.5
    min_net_losses: int = 4

    def __post_init__(self) -> None:
        if self.tol < 0 or self.topic_tol < 0 or self.min_support < 1 or not 0 <= self.new_topic_min_f1 <= 1:
            raise ValueError("tolerances must be >= 0, min_support >= 1, new_topic_min_f1 in [0, 1]")
        if self.min_net_losses < 0:
            raise ValueError("min_net_losses must be >= 0")


@dataclass(frozen=True)
class TopicGate:
    topic: str
    support: int
    live_f1: float | None  # None: the live model has no such topic (or there is no live model)
    candidate_f1: float
    status: str  # ok | worse | low support | new | new, weak | no live model
    failed: bool

    def to_json(self) -> dict:
        return {"topic": self.topic, "support": self.support,
                "live_f1": None if self.live_f1 is None else round(self.live_f1, 4),
                "candidate_f1": round(self.candidate_f1, 4), "status": self.status, "failed": self.failed}


@dataclass(frozen=True)
class Comparison:
    """Live vs candidate on one gate gold set."""

    name: str
    n_docs: int
    live_micro_f1: float | None  # over the shared topics
    candidate_micro_f1: float  # over the shared topics (all candidate topics without a live model)
    rows: tuple[TopicGate, ...]
    reasons: tuple[str, ...]  # why it fails; empty if it passes
    candidate_report: Report  # every candidate topic
    live_report: Report | None  # every live topic

    @property
    def failed(self) -> bool:
        return bool(self.reasons)

    def to_json(self) -> dict:
        return {"name": self.name, "n_docs": self.n_docs,
                "live_micro_f1": None if self.live_micro_f1 is None else round(self.live_micro_f1, 4),
                "candidate_micro_f1": round(self.candidate_micro_f1, 4),
                "topics": [r.to_json() for r in self.rows], "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]
    comparisons: tuple[Comparison, ...]
    live_version: str | None
    new_topics: tuple[str, ...]
    policy: GatePolicy

    def to_json(self) -> dict:
        return {"promote": self.promote, "reasons": list(self.reasons), "live_version": self.live_version,
                "new_topics": list(self.new_topics), "policy": dataclasses.asdict(self.policy),
                "comparisons": [c.to_json() for c in self.comparisons]}

    def table(self) -> str:
        """Side-by-side per-topic table per gold set, then the decision and its reasons."""
        out = []
        live = self.live_version or "(none)"
        for c in self.comparisons:
            out.append(f"gate gold {c.name} ({c.n_docs} articles): live {live} vs candidate")
            out.append(f"{'topic':20s} {'support':>7s} {'live F1':>8s} {'cand F1':>8s} {'delta':>7s}  gate")
            for r in c.rows:
                live_f1 = "–" if r.live_f1 is None else f"{r.live_f1:.3f}"
                delta = "–" if r.live_f1 is None else f"{r.candidate_f1 - r.live_f1:+.3f}"
                name = r.topic + (" (new)" if r.status.startswith("new") else "")
                status = {"low support": f"not gated (support < {self.policy.min_support})",
                          "worse": f"FAIL (drop > {self.policy.topic_tol})",
                          "new, weak": f"FAIL (new topic F1 < {self.policy.new_topic_min_f1})"}.get(r.status, r.status)
                if r.status == "new" and r.support == 0:
                    status = "new: no article of it in this gold set"
                out.append(f"{name:20s} {r.support:7d} {live_f1:>8s} {r.candidate_f1:8.3f} {delta:>7s}  {status}")
            if c.live_micro_f1 is None:
                out.append(f"micro-F1 {c.candidate_micro_f1:.3f}")
            else:
                ok = "FAIL" if any("micro-F1" in r for r in c.reasons) else "ok"
                out.append(f"micro-F1 (shared topics) {c.live_micro_f1:.3f} -> {c.candidate_micro_f1:.3f} "
                           f"({c.candidate_micro_f1 - c.live_micro_f1:+.3f})  {ok}")
            out.append("")
        out.append(("PROMOTE" if self.promote else "REFUSED") + ":")
        out.extend(f"  - {r}" for r in self.reasons)
        return "\n".join(out)


def _net_losses(truth: Mapping[str, set[str]], live: Mapping[str, set[str]], cand: Mapping[str, set[str]],
                topic: str) -> int:
    """Articles the candidate gets wrong on ``topic`` and live gets right, minus the reverse."""
    net = 0
    for i, gold in truth.items():
        want = topic in gold
        net += ((topic in live[i]) == want) - ((topic in cand[i]) == want)
    return net


def _compare_one(name: str, gold: Sequence[Article], live: TopicModel | None, candidate: TopicModel,
                 policy: GatePolicy) -> Comparison:
    truth = {a.id: set(a.topics or ()) for a in gold}
    cand_pred = predict_topics(candidate, gold)
    cand_report = score(truth, cand_pred, candidate.topics)
    if live is None:
        rows = tuple(TopicGate(m.topic, m.support, None, m.f1, "no live model", False) for m in cand_report.per_topic)
        return Comparison(name, len(gold), None, cand_report.micro_f1, rows, (), cand_report, None)
    live_pred = predict_topics(live, gold)
    live_report = score(truth, live_pred, live.topics)
    shared = [t for t in candidate.topics if t in live.topics]
    # micro-F1 over the topics both models have, so a new topic neither helps nor hurts the comparison.
    live_shared, cand_shared = score(truth, live_pred, shared), score(truth, cand_pred, shared)
    reasons = []
    if cand_shared.micro_f1 < live_shared.micro_f1 - policy.tol - 1e-9:
        reasons.append(f"{name}: micro-F1 {cand_shared.micro_f1:.3f} is below live {live_shared.micro_f1:.3f} "
                       f"- {policy.tol} ({cand_shared.micro_f1 - live_shared.micro_f1:+.3f})")
    rows = []
    for m in cand_report.per_topic:
        if m.topic in live.topics:
            live_f1 = live_report.f1(m.topic)
            if m.support < policy.min_support:
                status = "low support"
            elif m.f1 < live_f1 - policy.topic_tol - 1e-9 and (
                net := _net_losses(truth, live_pred, cand_pred, m.topic)
            ) >= policy.min_net_losses:
                status = "worse"
                reasons.append(f"{name}: {m.topic} F1 {m.f1:.3f} is below live {live_f1:.3f} - {policy.topic_tol} "
                               f"({m.f1 - live_f1:+.3f}, support {m.support}; P {m.precision:.2f} R {m.recall:.2f}; "
                               f"{net} more articles wrong than live)")
            else:
                status = "ok"
            rows.append(TopicGate(m.topic, m.support, live_f1, m.f1, status, status == "worse"))
        else:
            weak = m.support >= policy.min_support and m.f1 < policy.new_topic_min_f1 - 1e-9
            if weak:
                reasons.append(f"{name}: new topic {m.topic} F1 {m.f1:.3f} is below {policy.new_topic_min_f1} "
                               f"(support {m.support})")
            rows.append(TopicGate(m.topic, m.support, None, m.f1, "new, weak" if weak else "new", weak))
    return Comparison(name, len(gold), live_shared.micro_f1, cand_shared.micro_f1, tuple(rows), tuple(reasons),
                      cand_report, live_report)


def compare(live: TopicModel | None, live_version: str | None, candidate: TopicModel,
            gold_sets: Sequence[tuple[str, Sequence[Article]]], policy: GatePolicy = GatePolicy()) -> Decision:
    """Score both models on each gold set and decide: promote only if no set fails the gate."""
    if not gold_sets:
        raise ValueError("the gate needs at least one gold set")
    comparisons = tuple(_compare_one(name, gold, live, candidate, policy) for name, gold in gold_sets)
    new_topics = tuple(t for t in candidate.topics if live is not None and t not in live.topics)
    if live is None:
        return Decision(True, ("no live model (--first-version): the candidate becomes the first version, ungated",),
                        comparisons, None, new_topics, policy)
    lost = [t for t in live.topics if t not in candidate.topics]
    reasons = [f"candidate lacks topic(s) {lost} that the live model serves"] if lost else []
    reasons += [r for c in comparisons for r in c.reasons]
    if reasons:
        return Decision(False, tuple(reasons), comparisons, live_version, new_topics, policy)
    ok = []
    for c in comparisons:
        assert c.live_micro_f1 is not None
        gated = [r for r in c.rows if r.status == "ok"]
        ok.append(f"{c.name}: micro-F1 {c.live_micro_f1:.3f} -> {c.candidate_micro_f1:.3f} "
                  f"({c.candidate_micro_f1 - c.live_micro_f1:+.3f}); none of the {len(gated)} topics with support "
                  f">= {policy.min_support} dropped by more than {policy.topic_tol} with "
                  f"{policy.min_net_losses}+ more articles wrong")
    if new_topics:
        ok.append(f"new topic(s) {', '.join(new_topics)}: reported, not compared")
    return Decision(True, tuple(ok), comparisons, live_version, new_topics, policy)
