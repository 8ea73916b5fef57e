"""Where editors' time goes: each imported document becomes a queue item with a priority (lower is
reviewed sooner) and two fixed draws made from a hash of its id, so they are reproducible and do not
depend on import order.

- **Active order** (90% of items): ``priority = margin − 1.0·tag_disagrees − 0.5·unknown_outlet``.
  ``margin`` is :func:`tagger.uncertainty.margin` (the smallest distance, in logits, of a score from its
  topic's threshold: 0 = a coin flip); ``tag_disagrees`` is 1 when the page's own tags name a topic (by
  the keyword rules training uses, matched on the tags) that the model did not choose; ``unknown_outlet``
  is 1 when the article's outlet is not among the outlets of the model's gold training data. Each bonus
  moves an item ahead of items up to that many logits less sure.
- **Random slice** (``RANDOM_FRACTION`` = 10% of ids): reviewed in a random order (a hash of the id)
  and drawn for ``tagger.review.store.RANDOM_SHARE`` of next-item requests; their decisions are the
  unbiased quality figure and are never exported for training.
- **Double review** (``DOUBLE_FRACTION`` = 5% of ids): needs two different editors, for inter-editor
  agreement.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from tagger.artifacts import LoadedModel
from tagger.text import analyze
from tagger.uncertainty import margin

__all__ = [
    "DOUBLE_FRACTION",
    "RANDOM_FRACTION",
    "QueueBuilder",
    "Record",
    "in_random_slice",
    "needs_double_review",
    "unit_draws",
]

RANDOM_FRACTION: Final = 0.10
DOUBLE_FRACTION: Final = 0.05
TAG_DISAGREEMENT_BONUS: Final = 1.0
UNKNOWN_OUTLET_BONUS: Final = 0.5


def unit_draws(doc_id: str) -> tuple[float, float, float]:
    """Three independent uniform numbers in [0, 1) fixed by the id (one sha256): the random-slice draw,
    the double-review draw and the random slice's review order."""
    digest = hashlib.sha256(doc_id.encode("utf-8", "surrogatepass")).digest()
    return (int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:16], "big") / 2**64,
            int.from_bytes(digest[16:24], "big") / 2**64)


def in_random_slice(doc_id: str) -> bool:
    return unit_draws(doc_id)[0] < RANDOM_FRACTION


def needs_double_review(doc_id: str) -> bool:
    return unit_draws(doc_id)[1] < DOUBLE_FRACTION


@dataclass
class Record:
    """A document with the model's prediction, ready to queue."""

    doc_id: str
    title: str
    text: str
    model_version: str
    scores: Mapping[str, float]
    predicted: list[dict[str, Any]]  # [{"topic", "score"}] chosen, best first
    tags: Sequence[str] = ()
    outlet: str = ""
    url: str = ""
    published: str = ""
    source: str = "import"
    evidence: dict[str, list[dict[str, Any]]] | None = None


@dataclass
class QueueBuilder:
    """Turns Records into ``items`` rows (see :mod:`tagger.review.schema`), with the signals above."""

    topics: tuple[str, ...]
    thresholds: np.ndarray
    known_outlets: frozenset[str]
    tag_phrases: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    _phrase_topics: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    _longest: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, list[str]] = {}
        for topic, phrases in self.tag_phrases.items():
            for p in phrases:
                index.setdefault(" ".join(p), []).append(topic)
        self._phrase_topics = {k: tuple(v) for k, v in index.items()}
        self._longest = max((len(p) for ps in self.tag_phrases.values() for p in ps), default=0)

    @classmethod
    def for_model(cls, loaded: LoadedModel) -> QueueBuilder:
        from tagger.training.weak import load_keyword_rules

        model = loaded.model
        rules = load_keyword_rules(loaded.taxonomy)
        summary = loaded.manifest.get("data_summary") or {}
        return cls(model.topics, np.asarray(model.thresholds, np.float64),
                   frozenset(summary.get("gold_outlets") or ()),
                   {t: p for t, p in zip(rules.topics, rules.phrases) if t in model.topics})

    def tag_topics(self, tags: Sequence[str]) -> set[str]:
        """Topics the page's own tags name: a keyword rule phrase equal to a run of a tag's words."""
        out: set[str] = set()
        for tag in tags:
            words = analyze(tag)
            for n in range(1, min(len(words), self._longest) + 1):
                for k in range(len(words) - n + 1):
                    out.update(self._phrase_topics.get(" ".join(words[k:k + n]), ()))
        return out

    def rows(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        if not records:
            return []
        scores = np.array([[float(r.scores.get(t, 0.0)) for t in self.topics] for r in records], np.float64)
        margins = margin(np.clip(scores, 0.0, 1.0), self.thresholds)
        out = []
        for r, m in zip(records, margins.tolist()):
            chosen = {p["topic"] for p in r.predicted}
            disagrees = bool(self.tag_topics(r.tags) - chosen) if r.tags and self.tag_phrases else False
            unknown_outlet = bool(r.outlet) and bool(self.known_outlets) and r.outlet not in self.known_outlets
            slice_draw, double_draw, order_draw = unit_draws(r.doc_id)
            random_slice = slice_draw < RANDOM_FRACTION
            priority = (order_draw if random_slice else
                        m - TAG_DISAGREEMENT_BONUS * disagrees - UNKNOWN_OUTLET_BONUS * unknown_outlet)
            out.append({
                "doc_id": r.doc_id, "title": r.title, "text": r.text, "tags": list(r.tags), "outlet": r.outlet,
                "url": r.url, "published": r.published, "source": r.source, "model_version": r.model_version,
                "predicted": r.predicted, "scores": r.scores,
                "evidence": r.evidence, "priority": float(priority),
                "signals": {"margin": round(float(m), 4), "tag_disagrees": disagrees,
                            "unknown_outlet": unknown_outlet},
                "random_slice": random_slice, "reviews_needed": 2 if double_draw < DOUBLE_FRACTION else 1,
            })
        return out
