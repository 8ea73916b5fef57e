"""Which corpus articles a labelling round spends annotators' time on (training/labels/README.md).

Two ways to choose, from the same pool of unlabelled corpus articles:

- :func:`choose_uncertain`: the articles the model is least sure of. Each candidate is scored through
  the one predict path (:class:`tagger.tagger.Tagger`) and ranked by :mod:`tagger.uncertainty`, the
  ordering the review queue uses, so a labelling round and the queue agree on what "unsure" means.
- :func:`choose_random`: a seeded uniform sample, the baseline that tells whether the ordering earns
  its keep (issue 17: the same number of random and uncertainty-chosen labels, side by side).

Both skip near-duplicates, so no label is spent twice on one story: an article whose title, or whose
first :data:`DUPLICATE_PREFIX_CHARS` characters of body, equal those of an article already chosen (or
of a ``known`` article, one that is already labelled) is passed over. Both are deterministic given
the seed and the order of their inputs.
"""
from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from tagger.artifacts import LoadedModel
from tagger.document import Document
from tagger.tagger import Tagger
from tagger.text import normalize
from tagger.training.data import Article, read_articles
from tagger.uncertainty import margin, rank

__all__ = [
    "DUPLICATE_PREFIX_CHARS",
    "Scored",
    "candidate_pool",
    "choose_random",
    "choose_uncertain",
    "duplicate_keys",
    "score_articles",
]

#: Two articles whose bodies agree on this many leading characters (normalised) are one story for
#: labelling: corpus near-duplicates are re-posts whose endings differ by a tag line or a link.
DUPLICATE_PREFIX_CHARS = 300

T = TypeVar("T")


@dataclass(frozen=True)
class Scored:
    """An article as the model sees it: its margin (:func:`tagger.uncertainty.margin`; smaller is
    less sure) and the topics the model chooses for it, in the model's order (best first)."""

    article: Article
    margin: float
    predicted: tuple[str, ...]


def candidate_pool(corpus: Path | str | Iterable[Article], exclude_ids: Collection[str]) -> list[Article]:
    """The corpus articles (a JSONL(.xz) path or articles already read) whose id is not in
    ``exclude_ids`` (gold and already labelled articles), in corpus order.

    An article with no text cannot be labelled or scored: it is an error naming it, not a silent skip.
    """
    articles = read_articles(corpus) if isinstance(corpus, (str, Path)) else corpus
    excluded = frozenset(exclude_ids)
    pool = []
    for a in articles:
        if a.id in excluded:
            continue
        if not (a.title.strip() or a.body.strip()):
            raise ValueError(f"corpus article {a.id!r} has no text (empty title and body); it cannot be labelled")
        pool.append(a)
    return pool


def duplicate_keys(article: Article) -> tuple[str, ...]:
    """The keys under which two articles count as one story: the normalised title, and the first
    DUPLICATE_PREFIX_CHARS characters of the normalised body (an empty part gives no key)."""
    title, body = normalize(article.title), normalize(article.body)[:DUPLICATE_PREFIX_CHARS]
    return tuple(k for k in (f"title:{title}" if title else "", f"body:{body}" if body else "") if k)


def _distinct(items: Iterable[tuple[T, Article]], n: int, known: Iterable[Article]) -> list[T]:
    """The tags of the first ``n`` ``(tag, article)`` pairs whose article duplicates neither an earlier
    one nor a ``known`` article."""
    seen = {k for a in known for k in duplicate_keys(a)}
    out: list[T] = []
    for tag, a in items:
        if len(out) == n:
            break
        keys = duplicate_keys(a)
        if seen.isdisjoint(keys):
            out.append(tag)
        seen.update(keys)
    return out


def _check_n(n: int, available: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if n > available:
        raise ValueError(f"asked for {n} articles but the pool has only {available}")


def _tag(model: LoadedModel, articles: Sequence[Article]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Every article's topic scores ``(n, n_topics)`` and chosen topics, through Tagger.tag_many (the
    one predict path: the same cleaning, truncation and thresholds as every face)."""
    tagger = Tagger(model)
    results = tagger.tag_many([Document(id=a.id, title=a.title, body=a.body) for a in articles])
    topics = tagger.topics
    scores = np.array([[r.scores[t] for t in topics] for r in results], dtype=np.float64).reshape(-1, len(topics))
    return scores, [tuple(t.topic for t in r.topics) for r in results]


def score_articles(model: LoadedModel, articles: Sequence[Article]) -> list[Scored]:
    """Each article's margin and chosen topics under ``model``, in input order."""
    scores, chosen = _tag(model, articles)
    margins = margin(scores, model.model.thresholds)
    return [Scored(a, float(m), c) for a, m, c in zip(articles, margins.tolist(), chosen)]


def choose_uncertain(model: LoadedModel, articles: Sequence[Article], n: int, *, seed: int,
                     known: Iterable[Article] = ()) -> list[Scored]:
    """The ``n`` articles the model is least sure of (:func:`tagger.uncertainty.rank`), least sure
    first, no two of them (nor any of them and a ``known`` article) near-duplicates.

    Articles are shuffled with ``seed`` before ranking, so exact ties in margin (re-posted stories
    score alike) are broken by the seed, not by corpus order; ``rank`` is stable, so the result is
    reproducible. Fewer than ``n`` distinct articles is an error.
    """
    _check_n(n, len(articles))
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    shuffled = [articles[i] for i in order]
    scores, predicted = _tag(model, shuffled)
    thresholds = model.model.thresholds
    margins = margin(scores, thresholds).tolist()
    ranked = rank(scores, thresholds).tolist()
    keep = _distinct(((i, shuffled[i]) for i in ranked), n, known)
    chosen = [Scored(shuffled[i], margins[i], predicted[i]) for i in keep]
    if len(chosen) < n:
        raise ValueError(f"asked for {n} articles but only {len(chosen)} are not near-duplicates")
    return chosen


def choose_random(articles: Sequence[Article], n: int, *, seed: int, exclude_ids: Collection[str] = (),
                  known: Iterable[Article] = ()) -> list[Article]:
    """``n`` articles drawn uniformly with ``seed`` from ``articles`` minus ``exclude_ids``, in draw
    order, no two of them (nor any of them and a ``known`` article) near-duplicates."""
    excluded = frozenset(exclude_ids)
    pool = [a for a in articles if a.id not in excluded]
    _check_n(n, len(pool))
    drawn = list(pool)
    random.Random(seed).shuffle(drawn)
    chosen = _distinct(((a, a) for a in drawn), n, known)
    if len(chosen) < n:
        raise ValueError(f"asked for {n} articles but only {len(chosen)} are not near-duplicates")
    return chosen
