"""The featuriser: tokens → L2-normalised TF-IDF rows over word unigrams and bigrams.

It computes exactly what scikit-learn's ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
smooth_idf=True, norm="l2")`` computes on the same tokens (tests hold it to that), but it is built
for serving speed: unigrams are looked up with one C-level ``map`` over an id dict whose keys are
interned like the analyser's stems, and bigrams are resolved in NumPy as integer pairs against a
sorted key array, so no bigram string is ever built at predict time. That trick needs every
vocabulary bigram's two words to be vocabulary unigrams, which ``fit`` ensures. ``row`` is a few
dozen NumPy calls per document whatever its length; that, and one dict lookup per token, is the cost.
"""
from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import scipy.sparse as sp

from tagger.text import document_tokens, document_words, tokenize, word_stem

__all__ = ["TfidfFeaturizer", "NotFittedError"]

_BIGRAM_SEP: Final = " "
_WORD_IDS_MAX: Final = 500_000


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
        n = len(vocab)
        # An unknown token gets id n: one past the last feature, so no bigram key can contain it and
        # it sorts after every real feature (row() drops it with one searchsorted, no masks).
        self._unigram_ids = _UnigramIds((sys.intern(g), i) for g, i in vocab.items() if _BIGRAM_SEP not in g)
        self._unigram_ids.unknown = n
        self._word_ids = _WordIds(self._unigram_ids)
        keys, cols = [], []
        for g, i in vocab.items():
            if _BIGRAM_SEP in g:
                a, b = g.split(_BIGRAM_SEP)
                keys.append(vocab[a] * (n + 1) + vocab[b])
                cols.append(i)
        order = np.argsort(np.array(keys, dtype=np.int64), kind="stable")
        self._bigram_keys = np.array(keys, dtype=np.int64)[order]
        self._bigram_cols = np.array(cols, dtype=np.int64)[order]
        self._n = n
        self._fitted = True

    def __getstate__(self) -> dict:
        # The lookup index is derived data: rebuild it on load rather than store it twice.
        state = self.__dict__.copy()
        for k in ("_unigram_ids", "_word_ids", "_bigram_keys", "_bigram_cols", "_n"):
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
        # One C-level dict lookup per token; an unknown token is n (via __missing__, no Python call on a hit).
        return self._row_from_ids(np.fromiter(map(self._unigram_ids.__getitem__, tokens), np.int64, len(tokens)))

    def _row_from_ids(self, uni: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """row() from the tokens' unigram ids (n for unknown tokens); ``uni`` is reused as scratch."""
        m = uni.size
        if not m:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        n = self._n
        bigram_keys = self._bigram_keys
        if m > 1 and bigram_keys.size:
            keys = uni[:-1] * (n + 1)
            keys += uni[1:]
            # Sorted queries let the binary search start from its last answer: fewer cache misses.
            keys.sort()
            pos = bigram_keys.searchsorted(keys)
            np.minimum(pos, bigram_keys.size - 1, out=pos)
            cols = np.concatenate((uni, self._bigram_cols[pos[bigram_keys[pos] == keys]]))
        else:
            cols = uni
        cols.sort()
        k = int(cols.searchsorted(n))  # unknown tokens (id n) sort last
        if not k:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        # np.unique(cols[:k], return_counts=True), without its Python-level overhead (runs per document).
        edge = np.empty(k + 1, np.bool_)
        edge[0] = edge[k] = True
        np.not_equal(cols[1:k], cols[: k - 1], out=edge[1:k])
        starts = edge.nonzero()[0]
        idx = cols[starts[:-1]]
        vals = (np.log(starts[1:] - starts[:-1]) + 1.0) * self.idf_[idx]
        vals /= np.sqrt(vals @ vals)
        return idx, vals

    def transform_tokens(self, token_lists: Iterable[Sequence[str]]) -> sp.csr_matrix:
        """Tokenised documents → CSR matrix (n_docs × n_features), float64."""
        self._check_fitted()
        return _csr((self.row(tokens) for tokens in token_lists), self._n)

    def transform_documents(self, docs: Iterable[tuple[str, str]]) -> sp.csr_matrix:
        """(title, body) pairs → exactly ``transform_tokens(document_tokens(t, b) for t, b in docs)``.

        The batch fast path: each normalised word goes to its feature id with one lookup in a
        word → id cache (filled on a miss through the stemmer and the vocabulary), so neither the
        word's str nor its stem is built, and the stem → id lookup of :meth:`row` disappears.
        """
        self._check_fitted()
        return _csr((self._row_from_ids(self._document_ids(t, b)) for t, b in docs), self._n)

    def _document_ids(self, title: str, body: str) -> np.ndarray:
        words = document_words(title, body)
        if words is None:  # text outside tagger.text's code page: the str path
            tokens = document_tokens(title, body)
            return np.fromiter(map(self._unigram_ids.__getitem__, tokens), np.int64, len(tokens))
        return np.fromiter(map(self._word_ids.__getitem__, words), np.int64, len(words))

    def transform(self, texts: Iterable[str]) -> sp.csr_matrix:
        """Raw texts → CSR matrix, through the one text pipeline (:func:`tagger.text.tokenize`)."""
        return self.transform_tokens(tokenize(t) for t in texts)


class _UnigramIds(dict):
    """Unigram → feature id; an unknown word is ``unknown`` (``__missing__``), so
    ``map(ids.__getitem__, tokens)`` looks a document up without a Python call per known token. Keys
    are interned, as the stems from :mod:`tagger.text` are, so a hit matches by identity, not by
    comparing strings."""

    __slots__ = ("unknown",)

    def __missing__(self, token: str) -> int:
        return self.unknown


class _WordIds(dict):
    """Normalised word (code-page bytes, from :func:`tagger.text.document_words`) → unigram id, or
    the unknown id; filled on a miss through the stemmer and the vocabulary. Bounded like the
    stem caches, for the same long tail of rare words."""

    __slots__ = ("unigram_ids",)

    def __init__(self, unigram_ids: _UnigramIds) -> None:
        super().__init__()
        self.unigram_ids = unigram_ids

    def __missing__(self, word: bytes) -> int:
        i = self.unigram_ids[word_stem(word)]
        if len(self) < _WORD_IDS_MAX:
            self[word] = i
        return i


def _csr(rows: Iterable[tuple[np.ndarray, np.ndarray]], n_features: int) -> sp.csr_matrix:
    indptr = [0]
    indices: list[np.ndarray] = []
    data: list[np.ndarray] = []
    for idx, vals in rows:
        indices.append(idx)
        data.append(vals)
        indptr.append(indptr[-1] + len(idx))
    ind = np.concatenate(indices) if indices else np.empty(0, np.int64)
    dat = np.concatenate(data) if data else np.empty(0, np.float64)
    return sp.csr_matrix((dat, ind, np.array(indptr, np.int64)), shape=(len(indptr) - 1, n_features))
