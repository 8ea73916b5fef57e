"""The featuriser: tokens → L2-normalised TF-IDF rows over word unigrams and bigrams.

It computes what scikit-learn's ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
smooth_idf=True, norm="l2")`` computes on the same tokens: the same features, and values equal up to
the last bits (a row's norm is summed in another order; tests hold it to 1e-12). It is built
for serving speed: a document's normalised words go to unigram ids through a compiled hash-table
lookup (:class:`tagger.lookup.WordIds`; the stemmer and the vocabulary are consulted once per new
word), and bigrams are resolved as integer pairs of unigram ids in the same compiled pass that
builds the rows (:func:`tagger.kernels.tfidf_rows`), so no token or bigram string is built at
predict time. That needs every vocabulary bigram's two words to be vocabulary unigrams, which
``fit`` ensures.
"""
from __future__ import annotations

import functools
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from tagger.kernels import KEY_BYTES, fold_words, stem_spans, tfidf_rows, word_keys
from tagger.lookup import IntMap, PairHashTable, WordIds, padded
if TYPE_CHECKING:  # scipy is a training dependency: serving scores Rows, never a scipy matrix
    import scipy.sparse as sp

from tagger.text import STEM_TABLES, WORD_UNITS, code_page_bytes, document_tokens, document_units, tokenize, word_stem

__all__ = ["TfidfFeaturizer", "Rows", "NotFittedError", "MAX_FEATURES"]

_BIGRAM_SEP: Final = " "
_WORD_IDS_MAX: Final = 500_000
#: Most features a featuriser can have: a bigram's key (two unigram ids) and its feature id share
#: one 64-bit slot in the compiled lookup (tagger.lookup.IntMap).
MAX_FEATURES: Final = 2**21


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
        if max_features is not None and (not isinstance(max_features, int) or not 1 <= max_features <= MAX_FEATURES):
            raise ValueError(f"max_features must be None or an int in [1, {MAX_FEATURES:,}], got {max_features!r}")
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
        if len(kept) > MAX_FEATURES:
            raise ValueError(f"{len(kept):,} n-grams pass min_df={self.min_df}; at most {MAX_FEATURES:,} are supported: "
                             f"set max_features")
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
        idf = np.ascontiguousarray(idf, dtype=np.float64)
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
        # An unknown token gets id n: one past the last feature, so no bigram key can contain it.
        self._unigram_ids = _UnigramIds((sys.intern(g), i) for g, i in vocab.items() if _BIGRAM_SEP not in g)
        self._unigram_ids.unknown = n
        # Normalised word (code-page bytes) → unigram id, learnt as words are met: the words it can
        # key are stemmed by a compiled pass and their stems looked up in a table of the vocabulary's
        # unigrams (code-page bytes), the rest go through word_stem and the dict.
        stems, ids = [], []
        for g, i in self._unigram_ids.items():
            raw = code_page_bytes(g)
            if raw is not None and 0 < len(raw) <= KEY_BYTES and b"\0" not in raw:
                stems.append(raw)
                ids.append(i)
        self._stem_ids = PairHashTable(len(stems))
        if stems:
            buf64, starts, lengths = _packed(stems)
            self._stem_ids.add(*word_keys(buf64, starts, lengths), np.array(ids, np.int64))
        # The resolvers are plain functions of the lookup tables, not bound methods of self: a bound
        # method stored on self is a reference cycle, and a replaced model (a hot reload) would then
        # wait for a full garbage collection to be freed, holding its memory meanwhile.
        self._word_ids = WordIds(
            functools.partial(_resolve_word, self._unigram_ids), _WORD_IDS_MAX,
            functools.partial(_resolve_keyed, self._stem_ids, n),
        )
        keys, cols = [], []
        for g, i in vocab.items():
            if _BIGRAM_SEP in g:
                a, b = g.split(_BIGRAM_SEP)
                keys.append(vocab[a] * (n + 1) + vocab[b])
                cols.append(i)
        self._bigrams = IntMap(np.array(keys, dtype=np.int64), np.array(cols, dtype=np.int64))
        self._n = n
        self._scratch = threading.local()
        self._fitted = True

    def __getstate__(self) -> dict:
        # The lookup index is derived data: rebuild it on load rather than store it twice.
        state = self.__dict__.copy()
        for k in ("_unigram_ids", "_word_ids", "_stem_ids", "_bigrams", "_n", "_scratch"):
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
        """One document's (feature indices, L2-normalised tf-idf values), indices unique."""
        return self.rows_tokens([tokens]).row(0)

    def rows_tokens(self, token_lists: Iterable[Sequence[str]]) -> Rows:
        """Tokenised documents → their TF-IDF rows."""
        self._check_fitted()
        arrays = [self._token_ids(tokens) for tokens in token_lists]
        lengths = np.fromiter(map(len, arrays), np.int64, len(arrays))
        return self._rows_from_ids(np.concatenate(arrays) if arrays else np.empty(0, np.int64), lengths)

    def transform_tokens(self, token_lists: Iterable[Sequence[str]]) -> sp.csr_matrix:
        """Tokenised documents → CSR matrix (n_docs × n_features), float64."""
        return self.rows_tokens(token_lists).to_csr()

    def transform_documents(self, docs: Sequence[tuple[str, str]]) -> sp.csr_matrix:
        """(title, body) pairs → ``transform_tokens(document_tokens(t, b) for t, b in docs)``."""
        return self.rows_documents(docs).to_csr()

    def rows_documents(self, docs: Sequence[tuple[str, str]]) -> Rows:
        """(title, body) pairs → the rows of ``rows_tokens(document_tokens(t, b) for t, b in docs)``.

        The fast path every prediction takes, compiled from end to end: the documents' text is
        folded to normalised words in one pass (:func:`tagger.kernels.fold_words`), the words go to
        unigram ids together (:class:`tagger.lookup.WordIds`: a word met for the first time goes
        through the stemmer and the vocabulary once, then is remembered), and the ids to rows in
        one more pass. Documents with text outside the code page take the str path and are
        spliced back in order.
        """
        self._check_fitted()
        docs = list(docs)
        units = [document_units(title, body) for title, body in docs]
        if len(units) == 1:  # a server's request: the same arrays without four NumPy calls
            text = units[0]
            ends = np.array((len(text) // 2,), np.int64)
        else:
            text = b"".join(units)
            ends = np.fromiter(map(len, units), np.int64, len(units))
            np.cumsum(ends, out=ends)
            ends //= 2
        buf64, n, seg_ends, outside = fold_words(np.frombuffer(text, np.uint16), ends, WORD_UNITS)
        ids, lengths = self._word_ids.ids_buffer(buf64, n, seg_ends)
        slow = ((0,) if outside[0] else ()) if len(docs) == 1 else outside.nonzero()[0].tolist()
        if slow:
            parts = np.split(ids, np.cumsum(lengths)[:-1])
            for i in slow:
                parts[i] = self._token_ids(document_tokens(*docs[i]))
            lengths = np.fromiter(map(len, parts), np.int64, len(parts))
            ids = np.concatenate(parts)
        return self._rows_from_ids(ids, lengths)

    def transform(self, texts: Iterable[str]) -> sp.csr_matrix:
        """Raw texts → CSR matrix, through the one text pipeline (:func:`tagger.text.tokenize`)."""
        return self.transform_tokens(tokenize(t) for t in texts)

    # ------------------------------------------------------------ internals
    def _token_ids(self, tokens: Sequence[str]) -> np.ndarray:
        # One C-level dict lookup per token; an unknown token is n (via __missing__, no Python call on a hit).
        return np.fromiter(map(self._unigram_ids.__getitem__, tokens), np.int64, len(tokens))

    def _rows_from_ids(self, ids: np.ndarray, lengths: np.ndarray) -> Rows:
        """The one TF-IDF builder: documents given as consecutive runs of unigram ids (n = unknown)
        → L2-normalised sublinear TF-IDF rows (:func:`tagger.kernels.tfidf_rows`, one compiled
        pass). Each document is computed on its own, so it gets the same bits alone as inside any
        chunk; a row's indices are unique, in order of first occurrence."""
        scratch = self._scratch.__dict__
        counts = scratch.get("counts")
        if counts is None:  # per thread: the kernel releases the GIL
            counts = scratch["counts"] = np.zeros(self._n + 1, np.int32)
        bigrams = self._bigrams
        indptr, cols, vals = tfidf_rows(np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(lengths, np.int64),
                                        self._n, bigrams.slots, bigrams.shift, bigrams.value_bits, self.idf_, counts)
        return Rows(indptr, cols, vals, self._n)


@dataclass(frozen=True, eq=False)
class Rows:
    """Featurised documents in CSR layout, without scipy's construction cost (which a one-document
    request would pay in full): row i is ``indices[indptr[i]:indptr[i+1]]`` with ``data`` alike."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_features: int

    def __len__(self) -> int:
        return self.indptr.size - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[a:b], self.data[a:b]

    def to_csr(self) -> sp.csr_matrix:
        """The rows as a canonical scipy CSR matrix: indices sorted within each row.

        Rows keep first-occurrence order (scoring does not care), but matrix consumers may not:
        with unsorted rows, training's per-topic fits in parallel threads on one shared matrix
        gave different weights from run to run; canonical rows made them identical again."""
        index = np.int32 if self.indices.size < 2**31 else np.int64
        # A copy of data: sorting the matrix in place must not reorder this object's values.
        import scipy.sparse as sp

        m = sp.csr_matrix((self.data.copy(), self.indices.astype(index), self.indptr.astype(index)),
                          shape=(len(self), self.n_features))
        m.sort_indices()
        return m


def _resolve_word(unigram_ids: _UnigramIds, word: bytes) -> int:
    """A normalised word's unigram id (``unigram_ids.unknown`` if it is not in the vocabulary)."""
    return unigram_ids[word_stem(word)]


def _resolve_keyed(stem_ids: PairHashTable, unknown: int, buf: np.ndarray, buf64: np.ndarray, starts: np.ndarray,
                   lengths: np.ndarray) -> np.ndarray:
    """``_resolve_word`` of many keyable words at once, compiled: stem spans, then the stem table."""
    stem_starts, stem_lengths = stem_spans(buf, buf64, starts, lengths, *STEM_TABLES)
    ids = stem_ids.get(*word_keys(buf64, stem_starts, stem_lengths))
    ids[ids < 0] = unknown
    return ids


class _UnigramIds(dict):
    """Unigram → feature id; an unknown word is ``unknown`` (``__missing__``), so
    ``map(ids.__getitem__, tokens)`` looks a document up without a Python call per known token. Keys
    are interned, as the stems from :mod:`tagger.text` are, so a hit matches by identity, not by
    comparing strings."""

    __slots__ = ("unknown",)

    def __missing__(self, token: str) -> int:
        return self.unknown


def _packed(words: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words laid out for the compiled key reader: one zero-padded uint64 buffer, starts, lengths."""
    buf64 = padded(b" ".join(words))
    lengths = np.fromiter(map(len, words), np.int64, len(words))
    starts = np.zeros(len(words), np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return buf64, starts, lengths
