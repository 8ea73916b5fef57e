"""Site tags as a weak signal: audit which of a site's own tags agree with a topic, which are
navigation noise, and turn the agreeing ones into weak-label rules.

News pages carry keyword tags (كلمات دلالية). Some mean a topic (``عقوبات`` on sanctions stories);
many are navigation words printed on nearly every page (سياسة اقتصاد رياضة …) or entities that
cut across topics (ترامب, إيران). The audit measures, over articles whose topics are known (gold
labels, or the live model's predictions for pages nobody labelled), how often each tag's pages
have each topic. A tag that is rare, on most pages, or not predictive stays out; a predictive one
becomes a rule that labels the pages carrying it as weak positives of its topic(s) in training.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tagger.text import analyze
from tagger.training.weak import ABSTAIN

__all__ = ["TagAudit", "TagAuditConfig", "TagRules", "TagStat", "audit_tags", "tag_key"]


def tag_key(tag: str) -> str:
    """A tag in the model's text form, so عقوبات / العقوبات / والعقوبات count as one tag."""
    return " ".join(analyze(tag))


@dataclass(frozen=True)
class TagAuditConfig:
    """When a tag is noise, and when it is trusted as a weak label for a topic.

    A tag on at least ``noise_share`` of the pages is navigation noise whatever it co-occurs with.
    Otherwise it becomes a rule for a topic when it is on at least ``min_support`` pages, at least
    ``min_precision`` of them have the topic, and that is ``min_lift`` times the topic's base rate
    (so a tag does not qualify merely because its topic is common).
    """

    noise_share: float = 0.5
    min_support: int = 10
    min_precision: float = 0.6
    min_lift: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.noise_share <= 1 or not 0 < self.min_precision <= 1:
            raise ValueError("noise_share and min_precision must be in (0, 1]")
        if self.min_support < 1 or self.min_lift < 1:
            raise ValueError("min_support must be >= 1 and min_lift >= 1")


@dataclass(frozen=True)
class TagStat:
    """One tag's audit: how common it is, its best-agreeing topics, and the verdict."""

    tag: str  # the most frequent spelling seen
    key: str
    n_docs: int
    share: float
    kind: str  # "rule", "noise", "rare" or "uninformative"
    rule_topics: tuple[str, ...]
    # (topic, pages with both, precision, lift), best precision first; at most three
    best: tuple[tuple[str, int, float, float], ...]

    def to_json(self) -> dict:
        return {
            "tag": self.tag, "n_docs": self.n_docs, "share": round(self.share, 4), "kind": self.kind,
            "rule_topics": list(self.rule_topics),
            "best": [{"topic": t, "n": n, "precision": round(p, 4), "lift": round(lift, 2)} for t, n, p, lift in self.best],
        }


@dataclass(frozen=True)
class TagRules:
    """Audited tag → topics rules; ``labels`` gives a weak-label row (1 or ABSTAIN per topic)."""

    topics: tuple[str, ...]
    rules: Mapping[str, tuple[str, ...]]  # tag key -> topics

    def labels(self, tags: Sequence[str]) -> np.ndarray:
        row = np.full(len(self.topics), ABSTAIN, dtype=np.int8)
        for tag in tags:
            for t in self.rules.get(tag_key(tag), ()):
                row[self.topics.index(t)] = 1
        return row

    def __len__(self) -> int:
        return len(self.rules)


@dataclass(frozen=True)
class TagAudit:
    n_docs: int
    config: TagAuditConfig
    tags: tuple[TagStat, ...]  # most frequent first
    label_sources: dict[str, int] = field(default_factory=dict)  # e.g. {"gold": 120, "model": 800}

    def rules(self, topics: Sequence[str]) -> TagRules:
        return TagRules(tuple(topics), {s.key: s.rule_topics for s in self.tags if s.kind == "rule"})

    def of_kind(self, kind: str) -> list[TagStat]:
        return [s for s in self.tags if s.kind == kind]

    def to_json(self) -> dict:
        return {
            "n_docs": self.n_docs,
            "label_sources": dict(self.label_sources),
            "config": {k: getattr(self.config, k) for k in ("noise_share", "min_support", "min_precision", "min_lift")},
            "rules": {s.tag: list(s.rule_topics) for s in self.of_kind("rule")},
            "noise": [s.tag for s in self.of_kind("noise")],
            "tags": [s.to_json() for s in self.tags if s.kind != "rare"],
            "n_rare": len(self.of_kind("rare")),
        }

    def table(self, limit: int = 25) -> str:
        """The audit as text: rules and noise first, then the most frequent of the rest."""
        order = {"rule": 0, "noise": 1, "uninformative": 2, "rare": 3}
        shown = sorted(self.tags, key=lambda s: (order[s.kind], -s.n_docs, s.key))[:limit]
        src = ", ".join(f"{n} {k}" for k, n in self.label_sources.items())
        lines = [f"tag audit over {self.n_docs} tagged articles (labels: {src or 'none'})",
                 f"{'tag':24s} {'pages':>6s} {'share':>6s}  {'verdict':13s} best topic (precision, lift)"]
        for s in shown:
            best = ", ".join(f"{t} {p:.2f} x{lift:.1f}" for t, _, p, lift in s.best[:2]) or "-"
            verdict = s.kind + (f" → {'+'.join(s.rule_topics)}" if s.kind == "rule" else "")
            lines.append(f"{s.tag[:24]:24s} {s.n_docs:6d} {s.share:6.2f}  {verdict:13s} {best}")
        n_rare = len(self.of_kind("rare"))
        if n_rare:
            lines.append(f"({n_rare} tags on fewer than {self.config.min_support} pages are not used)")
        return "\n".join(lines)


def audit_tags(
    tag_lists: Sequence[Sequence[str]],
    labels: Sequence[set[str] | frozenset[str] | tuple[str, ...]],
    topics: Sequence[str],
    config: TagAuditConfig = TagAuditConfig(),
    label_sources: Mapping[str, int] | None = None,
) -> TagAudit:
    """Audit the tags of ``len(tag_lists)`` articles against their topic ``labels`` (same order)."""
    if len(tag_lists) != len(labels):
        raise ValueError(f"{len(tag_lists)} tag lists but {len(labels)} label sets")
    n = len(tag_lists)
    topic_n = Counter(t for lab in labels for t in set(lab) if t in topics)
    docs_with: dict[str, int] = Counter()
    both: dict[str, Counter] = defaultdict(Counter)
    spellings: dict[str, Counter] = defaultdict(Counter)
    for tags, lab in zip(tag_lists, labels):
        keys = {}
        for tag in tags:
            key = tag_key(tag)
            if key:
                keys.setdefault(key, tag)
                spellings[key][tag.strip()] += 1
        for key in keys:
            docs_with[key] += 1
            both[key].update(t for t in set(lab) if t in topics)
    stats = []
    for key, df in docs_with.items():
        share = df / n
        scored = []
        for t in topics:
            k = both[key][t]
            if k:
                precision = k / df
                scored.append((t, k, precision, precision / (topic_n[t] / n)))
        scored.sort(key=lambda x: (-x[2], -x[1], x[0]))
        rule_topics: tuple[str, ...] = ()
        if share >= config.noise_share:
            kind = "noise"
        elif df < config.min_support:
            kind = "rare"
        else:
            rule_topics = tuple(t for t, _, p, lift in scored if p >= config.min_precision and lift >= config.min_lift)
            kind = "rule" if rule_topics else "uninformative"
        # Most frequent spelling, ties broken alphabetically, so the report is stable.
        tag = min(spellings[key].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        stats.append(TagStat(tag, key, df, share, kind, rule_topics, tuple(scored[:3])))
    stats.sort(key=lambda s: (-s.n_docs, s.key))
    return TagAudit(n, config, tuple(stats), dict(label_sources or {}))
