"""Vectorised lookups for the featuriser: whole chunks of words or bigrams to ids in NumPy.

A Python dict lookup per word costs ~150 ns on a large vocabulary (a fresh object per word, its
hash, and cache misses on the entry and the key), which was most of a document's featurisation.
Here a chunk's words never become Python objects: their bytes are read as two little-endian
64-bit integers straight out of the text buffer (exact for words of up to 16 bytes, which is all but
a handful of Arabic words in the one-byte code page of :mod:`tagger.text`) and looked up in an
open-addressing hash table with one NumPy gather per probe round.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

import numpy as np

__all__ = ["PairHashTable", "WordIds", "KEY_BYTES"]

#: Words up to this many bytes are keyed exactly by their bytes; longer ones are looked up one by one.
KEY_BYTES: Final = 16
_MASKS: Final = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_MIX1: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX2: Final = np.uint64(0xC2B2AE3D27D4EB4F)


class PairHashTable:
    """Open-addressing (linear probing) hash table from a pair of uint64 keys to an int64 value >= 0,
    read and extended a whole array of keys at a time. A slot is one 24-byte row (key, key,
    value + 1; 0 marks an empty slot), so a probe costs one cache line."""

    def __init__(self, capacity: int = 0) -> None:
        self._alloc(max(16, 1 << int(np.ceil(np.log2(max(capacity, 1) * 2)))))  # load factor <= 1/2
        self.count = 0

    def _alloc(self, size: int) -> None:
        self._bits = size.bit_length() - 1
        self._slots_ = np.zeros((size, 3), np.uint64)

    @property
    def nbytes(self) -> int:
        return self._slots_.nbytes

    def _slot(self, k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = k1 * _MIX1
            h ^= k2 * _MIX2
            h ^= h >> np.uint64(29)
            h *= _MIX1
        return (h >> np.uint64(64 - self._bits)).astype(np.intp)

    def get(self, k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
        """The value of each key pair, -1 where absent."""
        table = self._slots_
        mask = table.shape[0] - 1
        slot = self._slot(k1, k2)
        rows = table[slot]
        stored = rows[:, 2]
        hit = (rows[:, 0] == k1) & (rows[:, 1] == k2) & (stored != 0)
        out = stored.astype(np.int64) - 1  # -1 where the slot is empty
        go_on = ~hit & (stored != 0)
        if not go_on.any():
            return out
        out[~hit] = -1
        # Keys whose first slot held another key: probe on (few, with a load factor <= 1/2).
        at = go_on.nonzero()[0]
        k1, k2, slot = k1[at], k2[at], (slot[at] + 1) & mask
        while at.size:
            rows = table[slot]
            stored = rows[:, 2]
            hit = (rows[:, 0] == k1) & (rows[:, 1] == k2) & (stored != 0)
            out[at[hit]] = stored[hit].astype(np.int64) - 1
            go_on = ~hit & (stored != 0)
            at, k1, k2, slot = at[go_on], k1[go_on], k2[go_on], (slot[go_on] + 1) & mask
        return out

    def add(self, k1: np.ndarray, k2: np.ndarray, values: np.ndarray) -> None:
        """Insert key pairs that are absent and distinct (the caller's promise), growing as needed."""
        if values.size and values.min() < 0:
            raise ValueError("values must be >= 0")
        if 2 * (self.count + values.size) > self._slots_.shape[0]:
            live = self._slots_[self._slots_[:, 2] != 0]
            size = self._slots_.shape[0]
            while 2 * (self.count + values.size) > size:
                size *= 2
            self._alloc(size)
            self.count = 0
            self._place(live[:, 0], live[:, 1], live[:, 2].astype(np.int64) - 1)
        self._place(k1, k2, values)

    def _place(self, k1: np.ndarray, k2: np.ndarray, values: np.ndarray) -> None:
        table = self._slots_
        mask = table.shape[0] - 1
        slot = self._slot(k1, k2)
        pending = np.arange(values.size)
        while pending.size:
            s = slot[pending]
            free = table[s, 2] == 0
            # Of the keys landing on one free slot in this round, the first takes it.
            taken, first = np.unique(s[free], return_index=True)
            placed = pending[free][first]
            table[taken, 0], table[taken, 1] = k1[placed], k2[placed]
            table[taken, 2] = values[placed].astype(np.uint64) + np.uint64(1)
            left = np.ones(pending.size, np.bool_)
            left[free.nonzero()[0][first]] = False
            pending = pending[left]
            # Every key still pending now sits on an occupied slot: probe the next one.
            slot[pending] = (slot[pending] + 1) & mask
        self.count += values.size


class WordIds:
    """Space-separated words (code-page bytes) → an id per word, for a whole chunk in one go.

    Ids come from ``resolve`` (word bytes → id) the first time a word is met and are remembered in a
    :class:`PairHashTable`, up to ``max_words`` words (archives have a long tail of rare words;
    past the cap a new word is resolved on every meeting). Thread-safe: one lock per lookup.
    """

    def __init__(self, resolve: Callable[[bytes], int], max_words: int = 500_000) -> None:
        if max_words < 0:
            raise ValueError("max_words must be >= 0")
        self._resolve = resolve
        self._max_words = max_words
        self._table = PairHashTable()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._table.count

    def ids(self, words: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(id of each word, byte offset of each word in ``words``), in order."""
        # Padding: one space in front so every word has a start edge, and KEY_BYTES behind so the
        # 8-byte reads of the last word stay inside the buffer.
        buf = np.frombuffer(b" " + words + b" " * KEY_BYTES, np.uint8)
        edges = np.diff((buf != 0x20).view(np.int8))
        starts = (edges == 1).nonzero()[0] + 1
        lengths = (edges == -1).nonzero()[0] + 1 - starts
        # buf read as uint64 at every byte offset (unaligned reads are fine on the platforms NumPy
        # supports); masking keeps only the word's own bytes.
        at_offset = np.ndarray((buf.size - 7,), "<u8", buffer=buf, strides=(1,))
        k1 = at_offset[starts] & _MASKS[np.minimum(lengths, 8)]
        k2 = at_offset[starts + 8] & _MASKS[np.clip(lengths - 8, 0, 8)]
        offsets = starts - 1
        with self._lock:
            out = self._table.get(k1, k2)
            long = lengths > KEY_BYTES
            missing = (out < 0) & ~long
            if missing.any():
                self._learn(words, k1, k2, offsets, lengths, missing, out)
            for i in long.nonzero()[0].tolist():
                out[i] = self._resolve(words[offsets[i]: offsets[i] + lengths[i]])
        return out, offsets

    def _learn(self, words: bytes, k1: np.ndarray, k2: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
               missing: np.ndarray, out: np.ndarray) -> None:
        at = missing.nonzero()[0]
        pairs = np.stack((k1[at], k2[at]), axis=1)
        _, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
        new = at[first]
        values = np.array([self._resolve(words[o: o + n]) for o, n in zip(offsets[new].tolist(), lengths[new].tolist())],
                          dtype=np.int64)
        out[at] = values[inverse.reshape(-1)]
        room = max(0, self._max_words - self._table.count)
        if room:
            keep = new[:room]
            self._table.add(k1[keep], k2[keep], values[:room])
