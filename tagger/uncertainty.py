"""How unsure the model is about a document: the distance of its scores from their thresholds.

A topic decision is least certain where a document's score sits at the topic's threshold. The
distance is measured in logit space, so 0.50 vs 0.45 and 0.99 vs 0.94 are not treated alike: the
second is far more certain. The review queue orders documents by it, and the labelling rounds that
spend annotators' time (``training/labels/``) choose articles with it, so both use this one module.
"""
from __future__ import annotations

import numpy as np

__all__ = ["margin", "rank"]

_EPS = 1e-9


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def margin(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-document uncertainty: the smallest ``|logit(score) - logit(threshold)|`` over topics.

    ``scores`` is ``(n_docs, n_topics)`` probabilities, ``thresholds`` ``(n_topics,)`` in (0, 1).
    Returns ``(n_docs,)`` non-negative floats; smaller means less sure (0 = a score on its threshold).
    """
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if scores.ndim != 2 or scores.shape[1] != thresholds.shape[0]:
        raise ValueError(f"scores {scores.shape} and thresholds {thresholds.shape} disagree on the number of topics")
    if scores.shape[1] == 0:
        raise ValueError("need at least one topic")
    if not np.all((thresholds > 0) & (thresholds < 1)):
        raise ValueError("thresholds must lie in (0, 1)")
    if scores.size and not (np.all(np.isfinite(scores)) and scores.min() >= 0 and scores.max() <= 1):
        raise ValueError("scores must be probabilities in [0, 1]")
    return np.abs(_logit(scores) - _logit(thresholds)).min(axis=1)


def rank(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Document indices, least sure first (ties keep input order, so the ranking is reproducible)."""
    return np.argsort(margin(scores, thresholds), kind="stable")
