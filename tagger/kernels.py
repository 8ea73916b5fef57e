"""The compiled inner loops of featurisation and scoring (numba): folding text to normalised words,
word splitting and hashing, stemming new words, hash-table probes, TF-IDF rows, their product with
the weights, and the choice of topics. Everything else stays Python and NumPy.

Why compiled: a document is a few hundred words, and per-word work in Python (an object, a dict
lookup, ~150 ns) or as a few dozen NumPy calls per chunk was most of a batch run's time. Each loop
here does one pass and allocates its outputs once; the same loop serves one request and a chunk of
thousands of documents, so a document gets the same bits alone as in any chunk.

All loops live in this one file on purpose: numba's on-disk cache (``cache=True``: compiled once per
machine, then loaded) is invalidated per source file, so a loop inlined from another file could go
stale in the cache. ``fastmath`` stays off: sums run in IEEE order, as written.
"""
from __future__ import annotations

from typing import Final

import numpy as np
from numba import njit

__all__ = [
    "KEY_BYTES", "PAD_WORDS", "DELETED", "OUTSIDE", "MISSING", "ONE_BY_ONE", "pair_get", "pair_put", "int_get", "int_put",
    "word_ids", "word_keys", "stem_spans", "fold_words", "tfidf_rows", "rows_dot", "choose_topics",
]

_MIX1: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX2: Final = np.uint64(0xC2B2AE3D27D4EB4F)
_FOLD: Final = np.uint64(29)
#: Words of up to this many bytes are keyed exactly by their bytes (two uint64).
KEY_BYTES: Final = 16
#: word_ids: a word the table does not hold yet / one it cannot key (too long, or holding a NUL byte).
MISSING: Final = -1
ONE_BY_ONE: Final = -2
# 1 + log(tf) for the term counts nearly every document has (NumPy's log, as scikit-learn's);
# tfidf_rows computes rarer ones. A global array is a constant to compiled code.
_LOG_TF: Final = np.concatenate(([0.0], np.log(np.arange(1, 1024, dtype=np.float64)) + 1.0))


def _compiled(fn):
    """``njit`` with numba's on-disk cache where it can write one (next to this file, or the user's
    cache folder); on a read-only install with no writable home, compiled once per process instead
    of failing at import."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(cache=False, nogil=True)(fn)


# ------------------------------------------------------------------------- hash table
# A table is an (2**bits, 3) uint64 array of rows (key, key, value + 1), 0 marking an empty slot,
# and shift = 64 - bits; linear probing.
@njit(inline="always")
def _slot_of(k1: np.uint64, k2: np.uint64, shift: np.uint64) -> int:
    h = k1 * _MIX1
    h ^= k2 * _MIX2
    h ^= h >> _FOLD
    h *= _MIX1
    return np.intp(h >> shift)


@njit(inline="always")
def _probe(slots: np.ndarray, shift: np.uint64, k1: np.uint64, k2: np.uint64) -> int:
    mask = slots.shape[0] - 1
    j = _slot_of(k1, k2, shift)
    while True:
        v = slots[j, 2]
        if v == 0:
            return -1
        if slots[j, 0] == k1 and slots[j, 1] == k2:
            return np.int64(v) - 1
        j = (j + 1) & mask


@_compiled
def pair_get(slots: np.ndarray, shift: np.uint64, k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
    """The value of each key pair, -1 where absent."""
    out = np.empty(k1.shape[0], np.int64)
    for i in range(k1.shape[0]):
        out[i] = _probe(slots, shift, k1[i], k2[i])
    return out


@_compiled
def pair_put(slots: np.ndarray, shift: np.uint64, k1: np.ndarray, k2: np.ndarray, values: np.ndarray) -> None:
    """Insert absent, distinct key pairs; the caller keeps the load factor low enough."""
    mask = slots.shape[0] - 1
    for i in range(k1.shape[0]):
        j = _slot_of(k1[i], k2[i], shift)
        while slots[j, 2] != 0:
            j = (j + 1) & mask
        slots[j, 0] = k1[i]
        slots[j, 1] = k2[i]
        slots[j, 2] = np.uint64(values[i] + 1)


# An int map packs each entry in one uint64 slot, (key + 1) << value_bits | value, 0 marking an empty
# slot: a probe reads 8 bytes, and the map stays small enough for the CPU's caches.
@njit(inline="always")
def _int_probe(slots: np.ndarray, shift: np.uint64, value_bits: np.uint64, key: np.uint64) -> int:
    mask = slots.shape[0] - 1
    j = _slot_of(key, np.uint64(1), shift)
    want = key + np.uint64(1)
    while True:
        s = slots[j]
        if s == 0:
            return -1
        if (s >> value_bits) == want:
            return np.int64(s & ((np.uint64(1) << value_bits) - np.uint64(1)))
        j = (j + 1) & mask


@_compiled
def int_get(slots: np.ndarray, shift: np.uint64, value_bits: np.uint64, keys: np.ndarray) -> np.ndarray:
    """The value of each key (int64 >= 0), -1 where absent."""
    out = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        out[i] = _int_probe(slots, shift, value_bits, np.uint64(keys[i]))
    return out


@_compiled
def int_put(slots: np.ndarray, shift: np.uint64, value_bits: np.uint64, keys: np.ndarray, values: np.ndarray) -> None:
    """Insert absent, distinct keys; the caller sizes the table and checks that entries fit a slot."""
    mask = slots.shape[0] - 1
    for i in range(keys.shape[0]):
        j = _slot_of(np.uint64(keys[i]), np.uint64(1), shift)
        while slots[j] != 0:
            j = (j + 1) & mask
        slots[j] = (np.uint64(keys[i] + 1) << value_bits) | np.uint64(values[i])


# ------------------------------------------------------------------------------ words
#: Word buffers are uint64 arrays read as bytes, with this many zero words past the text, so a
#: word's key is two or three aligned 8-byte loads (:func:`_word_key`) instead of a loop per byte.
PAD_WORDS: Final = 3
# _KEY_MASKS[k]: the low k bytes of a uint64.
_KEY_MASKS: Final = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


@njit(inline="always")
def _word_key(buf64: np.ndarray, start: int, length: int):
    """A word's key: its first 16 bytes read little-endian as two uint64 (zero past its end). Exact
    for words of up to KEY_BYTES bytes without a NUL byte."""
    q = start >> 3
    off = np.uint64((start & 7) * 8)
    back = np.uint64(63) - off
    lo = buf64[q]
    hi = buf64[q + 1]
    # (x << 1) << (63 - off) is x << (64 - off) without a shift by 64 (undefined) when off == 0.
    k1 = (lo >> off) | ((hi << np.uint64(1)) << back)
    k2 = (hi >> off) | ((buf64[q + 2] << np.uint64(1)) << back)
    return k1 & _KEY_MASKS[min(length, 8)], k2 & _KEY_MASKS[min(max(length - 8, 0), 8)]


@_compiled
def word_ids(buf: np.ndarray, buf64: np.ndarray, n: int, seg_ends: np.ndarray, in_word: np.ndarray,
             slots: np.ndarray, shift: np.uint64):
    """Split the first ``n`` bytes of ``buf`` (a uint8 view of ``buf64``, padded with PAD_WORDS zero
    words) into words as ``bytes.split()`` does (``in_word``: 1 per byte value inside a word), and
    look each up by its key (:func:`_word_key`). Returns (ids, starts, lengths, words per
    segment); an id is MISSING or ONE_BY_ONE where the table cannot answer. Segments are joined by
    one byte that is not in a word; ``seg_ends[s]`` is the offset where segment s ends.

    Three loops, each simple: word edges without a branch per byte (a mispredicted branch at every
    word boundary was a third of the time), keys, then probes, whose cache misses overlap when
    nothing else is in the loop."""
    # Nothing below is bounds-checked: every word must fall inside a segment.
    last = 0
    for s in range(seg_ends.shape[0]):
        if seg_ends[s] < last:
            raise ValueError("seg_ends must be non-decreasing segment ends, the last one n")
        last = seg_ends[s]
    if last != n:
        raise ValueError("seg_ends must be non-decreasing segment ends, the last one n")
    edges = np.empty(n + 2, np.int64)
    k = 0
    inside = np.uint8(0)
    nul = False
    for p in range(n):
        b = buf[p]
        now = in_word[b]
        edges[k] = p
        k += now ^ inside
        inside = now
        nul |= b == 0
    if inside:
        edges[k] = n
        k += 1
    w = k // 2
    starts = np.empty(w, np.int64)
    lengths = np.empty(w, np.int64)
    k1 = np.empty(w, np.uint64)
    k2 = np.empty(w, np.uint64)
    counts = np.zeros(seg_ends.shape[0], np.int64)
    seg = 0
    for i in range(w):
        start = edges[2 * i]
        length = edges[2 * i + 1] - start
        starts[i] = start
        lengths[i] = length
        k1[i], k2[i] = _word_key(buf64, start, length)
        while start >= seg_ends[seg]:
            seg += 1
        counts[seg] += 1
    ids = np.empty(w, np.int64)
    for i in range(w):
        exact = lengths[i] <= KEY_BYTES
        if nul and exact:  # rare: only then look for a NUL inside the word
            for p in range(starts[i], starts[i] + lengths[i]):
                exact &= buf[p] != 0
        ids[i] = _probe(slots, shift, k1[i], k2[i]) if exact else ONE_BY_ONE
    return ids, starts, lengths, counts


@_compiled
def word_keys(buf64: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """The (k1, k2) keys :func:`word_ids` probes with, for words it could key."""
    k1 = np.empty(starts.shape[0], np.uint64)
    k2 = np.empty(starts.shape[0], np.uint64)
    for i in range(starts.shape[0]):
        k1[i], k2[i] = _word_key(buf64, starts[i], lengths[i])
    return k1, k2


@_compiled
def stem_spans(buf: np.ndarray, buf64: np.ndarray, starts: np.ndarray, lengths: np.ndarray, arabic: np.ndarray,
               prefixes: np.ndarray, suffixes: np.ndarray):
    """Where each word's stem lies in ``buf`` (start, length): :func:`tagger.text.stem` on code-page
    bytes. A word of more than three bytes whose first byte is an Arabic letter (``arabic``) loses
    its longest listed prefix that leaves three bytes, then its longest such suffix. ``prefixes``
    and ``suffixes`` are rows (length, bytes read little-endian as :func:`_word_key` reads them),
    longest first. ``buf`` is a uint8 view of ``buf64``, as for :func:`word_ids`."""
    m = starts.shape[0]
    out_starts = starts.copy()
    out_lengths = lengths.copy()
    for i in range(m):
        s = starts[i]
        n = lengths[i]
        if n <= 3 or not arabic[buf[s]]:
            continue
        for r in range(prefixes.shape[0]):
            k = np.int64(prefixes[r, 0])
            if n - k >= 3 and _word_key(buf64, s, k)[0] == prefixes[r, 1]:
                s += k
                n -= k
                break
        for r in range(suffixes.shape[0]):
            k = np.int64(suffixes[r, 0])
            if n - k >= 3 and _word_key(buf64, s + n - k, k)[0] == suffixes[r, 1]:
                n -= k
                break
        out_starts[i] = s
        out_lengths[i] = n
    return out_starts, out_lengths


#: fold_words: what a UTF-16 code unit becomes, besides a code-page byte.
DELETED: Final = 256  # removed by normalisation (harakat, tatweel, ...)
OUTSIDE: Final = 257  # not in the code page: the segment takes the str path


@_compiled
def fold_words(units: np.ndarray, seg_ends: np.ndarray, table: np.ndarray):
    """UTF-16 code units of consecutive text segments (``seg_ends[s]``: where segment s ends) → their
    normalised words as code-page bytes, each non-word character a space (``table``: code unit →
    byte, DELETED or OUTSIDE), in a zero-padded uint64 buffer ready for :func:`word_ids`.

    Returns (buffer, bytes used, where each segment ends in it, whether each segment had a
    character outside the code page). Such a segment is left empty: its text goes the str way.
    Segments are joined by one space, as :func:`word_ids` expects."""
    n_seg = seg_ends.shape[0]
    n = units.shape[0] + n_seg
    buf64 = np.zeros(n // 8 + 1 + PAD_WORDS, np.uint64)
    buf = buf64.view(np.uint8)
    out_ends = np.empty(n_seg, np.int64)
    outside = np.zeros(n_seg, np.bool_)
    o = 0
    for s in range(n_seg):
        if s:
            buf[o] = 32
            o += 1
        first = o
        bad = False
        for i in range(seg_ends[s - 1] if s else 0, seg_ends[s]):
            v = table[units[i]]
            buf[o] = v  # DELETED and OUTSIDE wrap to a byte that the next write replaces
            o += v < DELETED
            bad |= v == OUTSIDE
        if bad:
            buf[first:o + 1] = 0  # o too: the segment's last unit may have been OUTSIDE, written but not kept
            o = first
            outside[s] = True
        out_ends[s] = o
    buf[o] = 0  # a wrapped DELETED or OUTSIDE may sit just past the end
    return buf64, o, out_ends, outside


# ----------------------------------------------------------------------------- TF-IDF
@_compiled
def tfidf_rows(ids: np.ndarray, lengths: np.ndarray, n: int, bigram_slots: np.ndarray, bigram_shift: np.uint64,
               bigram_value_bits: np.uint64, idf: np.ndarray, counts: np.ndarray):
    """Documents as consecutive runs of unigram ids (``n`` = unknown word) → CSR (indptr, indices,
    data) of L2-normalised sublinear TF-IDF over unigrams and bigrams. A bigram is two adjacent
    known ids in one document, keyed ``a * (n + 1) + b`` in the bigram int map.

    A row's indices are its features in order of first occurrence: sorting them would cost more
    than all the rest, and nothing downstream needs it. ``counts`` is all-zero scratch of length
    >= n, left all-zero again (it is reused rather than allocated, zeroed and paged in per call).
    """
    n_docs = lengths.shape[0]
    cap = 2 * ids.shape[0]
    cols = np.empty(cap, np.int64)
    vals = np.empty(cap, np.float64)
    indptr = np.zeros(n_docs + 1, np.int64)
    width = n + 1
    pos = 0
    out = 0
    for d in range(n_docs):
        first = out
        end = pos + lengths[d]
        for t in range(pos, end):
            a = ids[t]
            if a < n:
                # Appended only if new, without a branch: whether a feature is new is a coin toss.
                cols[out] = a
                out += counts[a] == 0
                counts[a] += 1
                if t + 1 < end and ids[t + 1] < n:
                    c = _int_probe(bigram_slots, bigram_shift, bigram_value_bits, np.uint64(a * width + ids[t + 1]))
                    if c >= 0:
                        cols[out] = c
                        out += counts[c] == 0
                        counts[c] += 1
        pos = end
        squares = 0.0
        for k in range(first, out):
            c = cols[k]
            tf = counts[c]
            counts[c] = 0
            v = (_LOG_TF[tf] if tf < _LOG_TF.shape[0] else np.log(np.float64(tf)) + 1.0) * idf[c]
            vals[k] = v
            squares += v * v
        if out > first:
            norm = np.sqrt(squares)
            for k in range(first, out):
                vals[k] /= norm
        indptr[d + 1] = out
    return indptr, cols[:out].copy(), vals[:out].copy()


# ---------------------------------------------------------------------------- scoring
@_compiled
def rows_dot(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """CSR rows times a dense ``(n_features, k)`` matrix → ``(n_rows, k)``; each row's sums run
    over its own features in stored order, so a row's result does not depend on the other rows."""
    n_rows = indptr.shape[0] - 1
    k = coef.shape[1]
    out = np.zeros((n_rows, k), np.float64)
    for r in range(n_rows):
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            v = data[p]
            for j in range(k):
                out[r, j] += v * coef[c, j]
    return out


@_compiled
def choose_topics(scores: np.ndarray, thresholds: np.ndarray, allowed: np.ndarray, top_k: int,
                  fallback: float = 0.0):
    """Each row's chosen topic indices: score at or over its threshold and ``allowed``, best first,
    ties to the lower index, at most ``top_k`` (-1: no limit). With ``fallback`` > 0, a row that
    chose nothing takes its allowed topic with the highest score/threshold ratio if that ratio is at
    least ``fallback`` (ties to the lower index). Returns (the rows' choices one after the other,
    where each row's choices end). A loop of a dozen topics per row: NumPy's sort and masking cost a
    server request 13 µs in call overhead alone."""
    n, k = scores.shape
    flat = np.empty(n * k, np.int64)
    ends = np.empty(n, np.int64)
    o = 0
    for r in range(n):
        first = o
        for j in range(k):
            s = scores[r, j]
            if allowed[j] and s >= thresholds[j]:
                p = o  # insertion sort; a strict < keeps an equal score's lower index first
                while p > first and scores[r, flat[p - 1]] < s:
                    flat[p] = flat[p - 1]
                    p -= 1
                flat[p] = j
                o += 1
        if o == first and fallback > 0.0 and top_k != 0:
            best, best_ratio = -1, 0.0
            for j in range(k):
                if allowed[j]:
                    ratio = scores[r, j] / thresholds[j]
                    if ratio > best_ratio:
                        best, best_ratio = j, ratio
            if best >= 0 and best_ratio >= fallback:
                flat[o] = best
                o += 1
        if 0 <= top_k < o - first:
            o = first + top_k
        ends[r] = o
    return flat[:o], ends

