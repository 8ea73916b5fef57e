"""The featuriser: tokens → L2-normalised TF-IDF rows over word unigrams and bigrams.

It computes exactly what scikit-learn's ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
smooth_idf=True, norm="l2")`` computes on the same tokens (a test holds it to that), but it is built
for serving speed: unigrams are looked up with ``map(dict.get, tokens)`` and bigrams are resolved in
NumPy as integer pairs against a sorted key array, so no bigram string is ever built at predict time.
That trick needs every vocabulary bigram's two words to be vocabulary unigrams, which ``fit`` ensures.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import scipy.sparse as sp

from tagger.text import tokenize

__all__ = ["TfidfFeaturizer", "NotFittedError"]

_BIGRAM_SEP: Final = " "


class NotFittedError(RuntimeError):
    """Raised when a featuriser or model is used before ``fit``."""


class TfidfFeaturizer:
    """Word 1-2 gram TF-IDF with a fast, allocation-light ``transform``.

    Parameters
    ----------
    min_df:
        Keep n-grams seen in at least this many documents.
    max_features:
        Keep at most this many n-grams, the most frequent first (by corpus term frequency, ties by
        the n-gram itself so the result never depends on hash order).
    """

    def __init__(self, min_df: int = 2, max_features: int | None = 200_000) -> None:
        if not isinstance(min_df, int) or min_df < 1:
            raise ValueError(f"min_df must be an int >= 1, got {min_df!r}")
        if max_features is not None and (not isinstance(max_features, int) or max_features < 1):
            raise ValueError(f"max_features must be None or an int >= 1, got {max_features!r}")
        self.min_df = min_df
        self.max_features = max_features
        self._fitted = False

    # ------------------------------------------------------------------ fit
    def fit(self, token_lists: Iterable[Sequence[str]]) -> TfidfFeaturizer:
        """Learn the vocabulary and idf from tokenised documents."""
        df: Counter[str] = Counter()
        tf: Counter[str] = Counter()
        n_docs = 0
        for tokens in token_lists:
            n_docs += 1
            grams = list(tokens)
            grams.extend(a + _BIGRAM_SEP + b for a, b in zip(tokens, tokens[1:]))
            counts = Counter(grams)
            tf.update(counts)
            df.update(counts.keys())
        if n_docs == 0:
            raise ValueError("cannot fit a featuriser on zero documents")
        kept = [g for g, d in df.items() if d >= self.min_df]
        kept.sort(key=lambda g: (-tf[g], g))
        if self.max_features is not None:
            kept = kept[: self.max_features]
        kept_set = set(kept)
        # A bigram whose words were cut by max_features could not be resolved from unigram ids.
        kept = [g for g in kept if _BIGRAM_SEP not in g or all(w in kept_set for w in g.split(_BIGRAM_SEP))]
        kept.sort()  # sorted feature order, as scikit-learn's vectorisers use
        self.vocabulary_: dict[str, int] = {g: i for i, g in enumerate(kept)}
        dfs = np.array([df[g] for g in kept], dtype=np.float64)
        self.idf_ = (np.log((1.0 + n_docs) / (1.0 + dfs)) + 1.0).astype(np.float64)
        self.n_docs_ = n_docs
        self._build_index()
        return self

    @classmethod
    def from_vocabulary(
        cls, vocabulary: Sequence[str], idf: np.ndarray, *, min_df: int, max_features: int | None, n_docs: int
    ) -> TfidfFeaturizer:
        """Rebuild a fitted featuriser from its feature names (in column order) and idf."""
        feat = cls(min_df=min_df, max_features=max_features)
        idf = np.asarray(idf, dtype=np.float64)
        if idf.shape != (len(vocabulary),):
            raise ValueError(f"idf has shape {idf.shape}, expected ({len(vocabulary)},)")
        feat.vocabulary_ = {g: i for i, g in enumerate(vocabulary)}
        if len(feat.vocabulary_) != len(vocabulary):
            raise ValueError("vocabulary has duplicate entries")
        for g in vocabulary:
            parts = g.split(_BIGRAM_SEP)
            if len(parts) > 2 or any(p not in feat.vocabulary_ for p in parts if len(parts) == 2):
                raise ValueError(f"vocabulary entry {g!r} is not a unigram or a bigram of vocabulary unigrams")
        feat.idf_ = idf
        feat.n_docs_ = n_docs
        feat._build_index()
        return feat

    def _build_index(self) -> None:
        vocab = self.vocabulary_
        self._unigram_ids: dict[str, int] = {g: i for g, i in vocab.items() if _BIGRAM_SEP not in g}
        keys, cols = [], []
        n = len(vocab)
        for g, i in vocab.items():
            if _BIGRAM_SEP in g:
                a, b = g.split(_BIGRAM_SEP)
                keys.append(vocab[a] * n + vocab[b])
                cols.append(i)
        order = np.argsort(np.array(keys, dtype=np.int64), kind="stable")
        self._bigram_keys = np.array(keys, dtype=np.int64)[order]
        self._bigram_cols = np.array(cols, dtype=np.int64)[order]
        self._n = n
        self._fitted = True

    def __getstate__(self) -> dict:
        # The lookup index is derived data: rebuild it on load rather than store it twice.
        state = self.__dict__.copy()
        for k in ("_unigram_ids", "_bigram_keys", "_bigram_cols", "_n"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if state.get("_fitted"):
            self._build_index()

    # ------------------------------------------------------------ transform
    @property
    def n_features(self) -> int:
        self._check_fitted()
        return self._n

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError("this TfidfFeaturizer is not fitted yet; call fit() first")

    def feature_names(self) -> list[str]:
        self._check_fitted()
        names = [""] * self._n
        for g, i in self.vocabulary_.items():
            names[i] = g
        return names

    def row(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """One document's (feature indices, L2-normalised tf-idf values), indices unique and sorted."""
        self._check_fitted()
        if not tokens:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        uni = np.fromiter(map(self._unigram_ids.get, tokens, _MINUS_ONE(len(tokens))), np.int64, len(tokens))
        cols = uni[uni >= 0]
        if len(uni) > 1 and len(self._bigram_keys):
            a, b = uni[:-1], uni[1:]
            ok = (a >= 0) & (b >= 0)
            if ok.any():
                keys = a[ok] * self._n + b[ok]
                pos = np.searchsorted(self._bigram_keys, keys)
                pos[pos == len(self._bigram_keys)] = 0
                hit = self._bigram_keys[pos] == keys
                cols = np.concatenate((cols, self._bigram_cols[pos[hit]]))
        if not len(cols):
            return np.empty(0, np.int64), np.empty(0, np.float64)
        idx, counts = np.unique(cols, return_counts=True)
        vals = (np.log(counts) + 1.0) * self.idf_[idx]
        vals /= np.sqrt(vals @ vals)
        return idx, vals

    def transform_tokens(self, token_lists: Iterable[Sequence[str]]) -> sp.csr_matrix:
        """Tokenised documents → CSR matrix (n_docs × n_features), float64."""
        self._check_fitted()
        indptr = [0]
        indices: list[np.ndarray] = []
        data: list[np.ndarray] = []
        for tokens in token_lists:
            idx, vals = self.row(tokens)
            indices.append(idx)
            data.append(vals)
            indptr.append(indptr[-1] + len(idx))
        ind = np.concatenate(indices) if indices else np.empty(0, np.int64)
        dat = np.concatenate(data) if data else np.empty(0, np.float64)
        return sp.csr_matrix((dat, ind, np.array(indptr, np.int64)), shape=(len(indptr) - 1, self._n))

    def transform(self, texts: Iterable[str]) -> sp.csr_matrix:
        """Raw texts → CSR matrix, through the one text pipeline (:func:`tagger.text.tokenize`)."""
        return self.transform_tokens(tokenize(t) for t in texts)


def _MINUS_ONE(n: int) -> Iterable[int]:
    """Default values for ``map(dict.get, tokens, defaults)``: -1 marks an out-of-vocabulary token."""
    from itertools import repeat

    return repeat(-1, n)
