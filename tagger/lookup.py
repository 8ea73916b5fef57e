"""Hash tables for the featuriser: words and bigrams to feature ids, a whole request or chunk at a time.

A Python dict lookup per word costs ~150 ns on a large vocabulary (a fresh object per word, its
hash, and cache misses on the entry and the key), which was most of a document's featurisation.
Here a text's words never become Python objects: a compiled loop (:mod:`tagger.kernels`) reads each
word's bytes as two little-endian 64-bit integers (an exact key for words of up to 16 bytes with no
NUL byte, which is all but a handful of Arabic words in the one-byte code page of
:mod:`tagger.text`; other words are looked up one by one) and probes an open-addressing hash table
with them. The same loop serves one request and a chunk of thousands of documents: there is no
size threshold and no second path to keep equal.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np

from tagger.kernels import (
    KEY_BYTES, MISSING, ONE_BY_ONE, PAD_WORDS, int_get, int_put, pair_get, pair_put, word_ids, word_keys,
)

__all__ = ["KEY_BYTES", "IntMap", "PairHashTable", "WordIds", "padded"]

# Word bytes: all but the ASCII whitespace bytes.split() splits on.
_IN_WORD: Final = np.ones(256, np.uint8)
_IN_WORD[list(b" \t\n\r\x0b\x0c")] = 0


def padded(data: bytes) -> np.ndarray:
    """``data`` in a zero-padded uint64 buffer, as the compiled word loops read it (PAD_WORDS zero
    words past the end let a word's key be read with aligned 8-byte loads)."""
    buf64 = np.zeros(len(data) // 8 + 1 + PAD_WORDS, np.uint64)
    buf64.view(np.uint8)[: len(data)] = np.frombuffer(data, np.uint8)
    return buf64


class PairHashTable:
    """Open-addressing (linear probing) hash table from a pair of uint64 keys to an int64 value >= 0,
    read and extended a whole array of keys at a time by compiled loops. A slot is one 24-byte row
    (key, key, value + 1; 0 marks an empty slot), so a probe reads one row."""

    def __init__(self, capacity: int = 0) -> None:
        self._alloc(max(16, 1 << int(np.ceil(np.log2(max(capacity, 1) * 2)))))  # load factor <= 1/2
        self.count = 0

    def _alloc(self, size: int) -> None:
        self.slots = np.zeros((size, 3), np.uint64)
        self.shift = np.uint64(64 - (size.bit_length() - 1))

    @property
    def nbytes(self) -> int:
        return self.slots.nbytes

    def get(self, k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
        """The value of each key pair, -1 where absent. The pair (0, 0) is reserved (it marks empty
        slots): callers never look it up."""
        return pair_get(self.slots, self.shift, _u64(k1), _u64(k2))

    def add(self, k1: np.ndarray, k2: np.ndarray, values: np.ndarray) -> None:
        """Insert key pairs that are absent and distinct (the caller's promise), growing as needed."""
        k1, k2, values = _u64(k1), _u64(k2), np.ascontiguousarray(values, np.int64)
        if values.size and values.min() < 0:
            raise ValueError("values must be >= 0")
        if ((k1 == 0) & (k2 == 0)).any():
            raise ValueError("the key pair (0, 0) is reserved for empty slots")
        if 2 * (self.count + values.size) > self.slots.shape[0]:
            live = self.slots[self.slots[:, 2] != 0]
            size = self.slots.shape[0]
            while 2 * (self.count + values.size) > size:
                size *= 2
            self._alloc(size)
            pair_put(self.slots, self.shift, live[:, 0].copy(), live[:, 1].copy(), live[:, 2].astype(np.int64) - 1)
        pair_put(self.slots, self.shift, k1, k2, values)
        self.count += values.size


def _u64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.uint64)


class IntMap:
    """A fixed int64 → int64 map (keys and values >= 0), each entry packed in one uint64 slot (see
    :mod:`tagger.kernels`), so it must fit: bits of ``max key + 1`` plus bits of ``max value`` <= 64.
    At most 1/8 full: the bigram lookup probes it once per pair of adjacent words, and measured on
    a 26k-bigram model, a sparser table (fewer collisions, fewer mispredicted branches) was faster
    up to 1/8 (2 MB), then slower as it outgrew the caches. Compiled code may probe ``slots``
    directly."""

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        keys, values = np.asarray(keys, np.int64), np.asarray(values, np.int64)
        if keys.shape != values.shape or keys.ndim != 1:
            raise ValueError("keys and values must be 1-d and match one to one")
        if keys.size and (keys.min() < 0 or values.min() < 0):
            raise ValueError("keys and values must be non-negative")
        if np.unique(keys).size != keys.size:
            raise ValueError("duplicate keys")
        bits = max(1, int(values.max()).bit_length()) if values.size else 1
        if keys.size and (int(keys.max()) + 1).bit_length() + bits > 64:
            raise ValueError(f"keys up to {int(keys.max())} and values up to {int(values.max())} do not fit one 64-bit slot")
        size = max(16, 1 << int(np.ceil(np.log2(max(keys.size, 1) * 8))))
        self.slots = np.zeros(size, np.uint64)
        self.shift = np.uint64(64 - (size.bit_length() - 1))
        self.value_bits = np.uint64(bits)
        int_put(self.slots, self.shift, self.value_bits, keys, values)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, -1 where absent."""
        return int_get(self.slots, self.shift, self.value_bits, np.ascontiguousarray(keys, np.int64))


class WordIds:
    """Words (code-page bytes, separated as ``bytes.split()`` separates) → an id per word, for a
    request or a whole chunk in one compiled pass.

    Ids come from ``resolve`` (word bytes → id) the first time a word is met and are remembered
    (bounded: archives have a long tail of rare words; past ``max_words`` a new word is resolved on
    every meeting). Thread-safe: the table is read and extended under one lock.
    """

    def __init__(self, resolve: Callable[[bytes], int], max_words: int = 500_000,
                 resolve_keyed: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
                 ) -> None:
        if max_words < 0:
            raise ValueError("max_words must be >= 0")
        self._resolve = resolve
        self._resolve_keyed = resolve_keyed
        self._max_words = max_words
        self._table = PairHashTable()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Words remembered."""
        return self._table.count

    def ids(self, segments: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """The id of every word of every segment, concatenated in order, and each segment's word count."""
        if not segments:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        words = segments[0] if len(segments) == 1 else b" ".join(segments)
        buf64 = padded(words)
        seg_ends = np.fromiter(map(len, segments), np.int64, len(segments))
        seg_ends[1:] += 1  # the joining space before each later segment
        np.cumsum(seg_ends, out=seg_ends)
        return self.ids_buffer(buf64, len(words), seg_ends)

    def ids_buffer(self, buf64: np.ndarray, n: int, seg_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`ids` for segments already laid out as :func:`tagger.kernels.fold_words` lays them
        out: ``n`` bytes in a uint64 buffer with PAD_WORDS zero words after them, segments joined
        by one space and ending at ``seg_ends``."""
        if buf64.dtype != np.uint64 or buf64.ndim != 1 or buf64.size * 8 < n + 8 * PAD_WORDS:
            raise ValueError("buf64 must be a 1-d uint64 buffer holding n bytes and the padding after them")
        seg_ends = np.ascontiguousarray(seg_ends, np.int64)
        if seg_ends.ndim != 1:
            raise ValueError("seg_ends must be 1-d")  # the rest word_ids checks, compiled
        buf = buf64.view(np.uint8)
        with self._lock:
            out, starts, lengths, counts = word_ids(buf, buf64, n, seg_ends, _IN_WORD, self._table.slots,
                                                    self._table.shift)
            unknown = (out < 0).nonzero()[0]
            if unknown.size:
                self._learn(buf, buf64, out, starts, lengths, unknown)
        return out, counts

    def _learn(self, buf: np.ndarray, buf64: np.ndarray, out: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               unknown: np.ndarray) -> None:
        # Words the table can key: resolved together (compiled, if the owner gave a bulk resolver)
        # and remembered. The rest (too long to key) are resolved at every meeting.
        keyed = unknown[out[unknown] == MISSING]
        if keyed.size:
            if self._resolve_keyed is not None:
                out[keyed] = self._resolve_keyed(buf, buf64, starts[keyed], lengths[keyed])
            else:
                out[keyed] = self._resolve_each(buf, starts[keyed], lengths[keyed])
            self._remember(buf64, starts[keyed], lengths[keyed], out[keyed])
        rest = unknown[out[unknown] == ONE_BY_ONE]
        if rest.size:
            out[rest] = self._resolve_each(buf, starts[rest], lengths[rest])

    def _resolve_each(self, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``resolve`` of each word, called once per distinct word."""
        found: dict[bytes, int] = {}
        out = np.empty(starts.size, np.int64)
        for i, (o, n) in enumerate(zip(starts.tolist(), lengths.tolist())):
            word = buf[o: o + n].tobytes()
            known = found.get(word)
            if known is None:
                known = found[word] = self._resolve(word)
            out[i] = known
        return out

    def _remember(self, buf64: np.ndarray, starts: np.ndarray, lengths: np.ndarray, ids: np.ndarray) -> None:
        """Add keyable words (possibly repeated) to the table, each once, the first met first, while
        there is room."""
        room = self._max_words - self._table.count
        if room <= 0:
            return
        k1, k2 = word_keys(buf64, starts, lengths)
        pairs = np.empty(k1.size, dtype=[("k1", np.uint64), ("k2", np.uint64)])
        pairs["k1"], pairs["k2"] = k1, k2
        first = np.sort(np.unique(pairs, return_index=True)[1])[:room]
        self._table.add(k1[first], k2[first], ids[first])
