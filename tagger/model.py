"""TopicModel: the fitted featuriser plus one linear scorer per topic, as contiguous arrays.

Scoring a document is one sparse row (a few hundred non-zeros) times a dense ``(n_features,
n_topics)`` weight matrix: ``vals @ W[idx]``. That is microseconds per document, against ~12 ms for
a one-row ``OneVsRestClassifier.predict`` on a large TF-IDF pipeline, and the same code serves one
document or a million, so the server, batch tagger and Spark share it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagger.features import NotFittedError, Rows, TfidfFeaturizer
from tagger.kernels import rows_dot
from tagger.text import analyze

__all__ = ["TopicModel", "Evidence", "NotFittedError"]


@dataclass(frozen=True)
class Evidence:
    """An n-gram and how much it added to a topic's logit."""

    ngram: str
    weight: float


class TopicModel:
    """Per-topic logistic scores from TF-IDF features, and per-topic decision thresholds.

    ``coef`` is ``(n_features, n_topics)``; scores are ``sigmoid(x @ coef + intercept)``. A topic is
    chosen at or over its threshold; ``empty_fallback`` (optional) gives a document that would get no
    topic its best one when that topic's score is at least ``empty_fallback`` × its threshold.
    """

    def __init__(
        self,
        featurizer: TfidfFeaturizer,
        topics: Sequence[str],
        coef: np.ndarray,
        intercept: np.ndarray,
        thresholds: Sequence[float],
        empty_fallback: float | None = None,
    ) -> None:
        k = len(topics)
        if k == 0:
            raise ValueError("a TopicModel needs at least one topic")
        if len(set(topics)) != k:
            raise ValueError(f"duplicate topics in {list(topics)}")
        coef = np.ascontiguousarray(coef, dtype=np.float64)
        if coef.shape != (featurizer.n_features, k):
            raise ValueError(f"coef has shape {coef.shape}, expected ({featurizer.n_features}, {k})")
        intercept = np.asarray(intercept, dtype=np.float64).reshape(-1)
        thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if intercept.shape != (k,) or thresholds.shape != (k,):
            raise ValueError("intercept and thresholds need one value per topic")
        if not np.all((thresholds > 0) & (thresholds < 1)):
            raise ValueError(f"thresholds must lie in (0, 1), got {thresholds.tolist()}")
        if empty_fallback is not None and not (isinstance(empty_fallback, (int, float)) and 0 < empty_fallback < 1):
            raise ValueError(f"empty_fallback must be None or a ratio in (0, 1), got {empty_fallback!r}")
        self.featurizer = featurizer
        self.topics: tuple[str, ...] = tuple(topics)
        self.coef = coef
        self.intercept = intercept
        self.thresholds = thresholds
        #: A document with no topic over its threshold still gets its best topic when that topic's
        #: score reaches this share of its threshold (None: thresholds alone decide).
        self.empty_fallback = None if empty_fallback is None else float(empty_fallback)
        self._feature_names: list[str] | None = None

    # ---------------------------------------------------------------- scoring
    def scores_rows(self, rows: Rows) -> np.ndarray:
        """``(n_docs, n_topics)`` probabilities for featurised documents.

        One compiled pass (:func:`tagger.kernels.rows_dot`): each document's sums run over its own
        features in order, so a document scores exactly the same alone (a server request) as
        inside a batch chunk (a test holds it to that).
        """
        out = rows_dot(rows.indptr, rows.indices, rows.data, self.coef)
        out += self.intercept
        np.negative(out, out=out)
        np.exp(out, out=out)
        out += 1.0
        return np.reciprocal(out, out=out)

    def scores_tokens(self, tokens: Sequence[str]) -> np.ndarray:
        """Per-topic probabilities for one tokenised document."""
        return self.scores_rows(self.featurizer.rows_tokens([tokens]))[0]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """``(n_docs, n_topics)`` probabilities for plain texts (no title weighting; see Tagger for documents)."""
        return self.scores_rows(self.featurizer.rows_tokens([analyze(t) for t in texts]))

    def explain_row(self, idx: np.ndarray, vals: np.ndarray, topic: str, top_n: int = 5) -> list[Evidence]:
        """The n-grams that raised ``topic``'s logit most for a featurised document, largest first."""
        j = self.topics.index(topic)
        if not len(idx):
            return []
        contrib = vals * self.coef[idx, j]
        # Ties go to the lower feature id, whatever order the row lists its features in.
        order = np.lexsort((idx, -contrib))[:top_n]
        names = self.feature_names
        return [Evidence(names[idx[o]], float(contrib[o])) for o in order if contrib[o] > 0]

    def explain_tokens(self, tokens: Sequence[str], topic: str, top_n: int = 5) -> list[Evidence]:
        """The n-grams that raised ``topic``'s logit most for this document, largest first."""
        return self.explain_row(*self.featurizer.row(tokens), topic, top_n)

    @property
    def feature_names(self) -> list[str]:
        if self._feature_names is None:
            self._feature_names = self.featurizer.feature_names()
        return self._feature_names

    # ----------------------------------------------------------- persistence
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The model as plain arrays (no Python objects) plus the JSON-able settings the arrays need.

        Feature names are a fixed-width unicode array, so a reader loads them with
        ``allow_pickle=False``: nothing in a model file can run code.
        """
        arrays = {
            "vocabulary": np.asarray(self.featurizer.feature_names(), dtype=np.str_),
            "idf": np.ascontiguousarray(self.featurizer.idf_, dtype=np.float64),
            "coef": self.coef.astype(np.float32),
            "intercept": self.intercept.astype(np.float64),
            "thresholds": self.thresholds.astype(np.float64),
        }
        settings = {
            "topics": list(self.topics),
            "empty_fallback": self.empty_fallback,
            "min_df": self.featurizer.min_df,
            "max_features": self.featurizer.max_features,
            "n_docs": self.featurizer.n_docs_,
        }
        return arrays, settings

    #: Each array a model file must hold, with its dtype kind ('U' unicode, 'f' float).
    ARRAY_KINDS: dict[str, str] = {"vocabulary": "U", "idf": "f", "coef": "f", "intercept": "f", "thresholds": "f"}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], settings: Mapping[str, Any]) -> TopicModel:
        """Rebuild a model from :meth:`to_arrays`' output; raises ValueError naming what is wrong."""
        for name, kind in cls.ARRAY_KINDS.items():
            if name not in arrays:
                raise ValueError(f"lacks the array {name!r}")
            if arrays[name].dtype.kind != kind:
                raise ValueError(f"array {name!r} has dtype {arrays[name].dtype}, expected kind {kind!r}")
        for key, kind in (("topics", list), ("min_df", int), ("n_docs", int)):
            if not isinstance(settings.get(key), kind) or isinstance(settings.get(key), bool):
                raise ValueError(f"setting {key!r} must be {kind.__name__}, got {settings.get(key)!r}")
        max_features = settings.get("max_features")
        if max_features is not None and (not isinstance(max_features, int) or isinstance(max_features, bool)):
            raise ValueError(f"setting 'max_features' must be an int or null, got {max_features!r}")
        feat = TfidfFeaturizer.from_vocabulary(
            arrays["vocabulary"].tolist(), arrays["idf"], min_df=settings["min_df"],
            max_features=max_features, n_docs=settings["n_docs"],
        )
        return cls(feat, settings["topics"], arrays["coef"], arrays["intercept"], arrays["thresholds"],
                   settings.get("empty_fallback"))
