"""Vectorised lookups for the featuriser: whole chunks of words or bigrams to ids in NumPy.

A Python dict lookup per word costs ~150 ns on a large vocabulary (a fresh object per word, its
hash, and cache misses on the entry and the key), which was most of a document's featurisation.
Here a chunk's words never become Python objects: their bytes are read as two little-endian
64-bit integers straight out of the text buffer (an exact key for words of up to 16 bytes with no
NUL byte, which is all but a handful of Arabic words in the one-byte code page of
:mod:`tagger.text`; other words are looked up one by one) and looked up in an open-addressing hash
table with one NumPy gather per probe round.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Final

import numpy as np

__all__ = ["KEY_BYTES", "IntMap", "PairHashTable", "WordIds"]

#: Words up to this many bytes are keyed exactly by their bytes; longer ones are looked up one by one.
KEY_BYTES: Final = 16
_MASKS: Final = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_MIX1: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX2: Final = np.uint64(0xC2B2AE3D27D4EB4F)
_SCALAR_PROBES: Final = 64
# Word bytes: all but the ASCII whitespace bytes.split() splits on.
_IN_WORD: Final = np.ones(256, np.bool_)
_IN_WORD[list(b" \t\n\r\x0b\x0c")] = False
_SMALL_TEXT_BYTES: Final = 8192  # below this (a whole call's text) words go through dict lookups
_SMALL_KEYS: Final = 1024


class PairHashTable:
    """Open-addressing (linear probing) hash table from a pair of uint64 keys to an int64 value >= 0,
    read and extended a whole array of keys at a time. A slot is one 24-byte row (key, key,
    value + 1; 0 marks an empty slot), so a probe reads one 24-byte row."""

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
        """The value of each key pair, -1 where absent. The pair (0, 0) is reserved (it marks empty
        slots): callers never look it up."""
        table = self._slots_
        mask = table.shape[0] - 1
        slot = self._slot(k1, k2)
        rows = table[slot]
        hit = rows[:, 0] == k1
        hit &= rows[:, 1] == k2
        stored = rows[:, 2].view(np.int64)
        out = np.where(hit, stored - 1, -1)
        go_on = stored != 0
        go_on &= ~hit
        if not go_on.any():
            return out
        # Keys whose first slot held another key probe on. Few do (load factor <= 1/2), but a probe
        # chain can be long; once only a handful of keys are left, scalar probing is cheaper than
        # another round of array operations.
        at = go_on.nonzero()[0]
        k1, k2, slot = k1[at], k2[at], (slot[at] + 1) & mask
        while at.size > _SCALAR_PROBES:
            rows = table[slot]
            hit = (rows[:, 0] == k1) & (rows[:, 1] == k2)
            stored = rows[:, 2].view(np.int64)
            out[at[hit]] = stored[hit] - 1
            go_on = ~hit & (stored != 0)
            at, k1, k2, slot = at[go_on], k1[go_on], k2[go_on], (slot[go_on] + 1) & mask
        for i, a, b, j in zip(at.tolist(), k1.tolist(), k2.tolist(), slot.tolist()):
            while True:
                x, y, v = table[j].tolist()
                if v == 0:
                    break
                if x == a and y == b:
                    out[i] = v - 1
                    break
                j = (j + 1) & mask
        return out

    def add(self, k1: np.ndarray, k2: np.ndarray, values: np.ndarray) -> None:
        """Insert key pairs that are absent and distinct (the caller's promise), growing as needed."""
        if values.size and values.min() < 0:
            raise ValueError("values must be >= 0")
        if ((k1 == 0) & (k2 == 0)).any():
            raise ValueError("the key pair (0, 0) is reserved for empty slots")
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
        self.count += values.size
        if values.size <= _SCALAR_PROBES:  # a few new words (a server request): no array rounds
            for a, b, v, j in zip(k1.tolist(), k2.tolist(), values.tolist(), slot.tolist()):
                while table[j, 2]:
                    j = (j + 1) & mask
                table[j] = (a, b, v + 1)
            return
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


class IntMap:
    """A fixed int64 → int64 map (keys and values >= 0) for arrays of keys: a :class:`PairHashTable`
    for chunks, binary search in the sorted keys for a handful (a server request), where array
    rounds cost more than they save. Both hold the same entries."""

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        if keys.shape != values.shape or (keys.size and (keys.min() < 0 or values.min() < 0)):
            raise ValueError("keys and values must be non-negative and match one to one")
        order = np.argsort(keys, kind="stable")
        self._keys, self._values = keys[order].astype(np.int64), values[order].astype(np.int64)
        if self._keys.size and (self._keys[1:] == self._keys[:-1]).any():
            raise ValueError("duplicate keys")
        self._table = PairHashTable(keys.size)
        # Second key 1: (0, 0) marks an empty slot, and 0 is a valid key here.
        self._table.add(keys.astype(np.uint64), np.ones(keys.size, np.uint64), values.astype(np.int64))

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, -1 where absent."""
        if keys.size >= _SMALL_KEYS:
            return self._table.get(keys.astype(np.uint64), np.ones(keys.size, np.uint64))
        order = np.argsort(keys)
        out = np.empty(keys.size, np.int64)
        out[order] = self.present(keys[order], sorted_keys=True, absent=-1)
        return out

    def present(self, keys: np.ndarray, *, sorted_keys: bool = False, absent: int | None = None) -> np.ndarray:
        """The values of ``keys`` (in sorted-key order), leaving out absent keys (or giving
        ``absent`` for them). Sorted queries make the binary search cache-friendly."""
        if not sorted_keys:
            keys = np.sort(keys)
        if not self._keys.size:
            return np.empty(0, np.int64) if absent is None else np.full(keys.size, absent, np.int64)
        pos = self._keys.searchsorted(keys)
        np.minimum(pos, self._keys.size - 1, out=pos)
        hit = self._keys[pos] == keys
        if absent is None:
            return self._values[pos[hit]]
        return np.where(hit, self._values[pos], absent)


class WordIds:
    """Words (code-page bytes, separated as ``bytes.split()`` separates) → an id per word, for a
    whole chunk in one go.

    Ids come from ``resolve`` (word bytes → id) the first time a word is met and are remembered
    (bounded: archives have a long tail of rare words; past the cap a new word is resolved on every
    meeting). Chunks go through a :class:`PairHashTable`; a text of a few
    documents (a server request) through a plain dict, ``map(dict.get, words)``, because the array
    path's fixed cost of some thirty NumPy calls outweighs its per-word gain below ~1,000 words.
    Both remember what ``resolve`` said, so they give the same ids; each remembers up to
    ``max_words`` words. Thread-safe: table reads and every ``resolve`` call happen under one lock
    (the dict path reads without it; a dict lookup is atomic under the GIL).
    """

    def __init__(self, resolve: Callable[[bytes], int], max_words: int = 500_000) -> None:
        if max_words < 0:
            raise ValueError("max_words must be >= 0")
        self._resolve = resolve
        self._max_words = max_words
        self._table = PairHashTable()
        self._small: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Words remembered, counted per path (a word both paths met counts twice)."""
        return self._table.count + len(self._small)

    def ids(self, segments: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """The id of every word of every segment, concatenated in order, and each segment's word count."""
        if sum(map(len, segments)) < _SMALL_TEXT_BYTES:
            return self._ids_small(segments)
        words = b" ".join(segments)
        # Padding: one space in front so every word has a start edge, and KEY_BYTES behind so the
        # 8-byte reads of the last word stay inside the buffer.
        buf = np.frombuffer(b" " + words + b" " * KEY_BYTES, np.uint8)
        edges = np.diff(_IN_WORD[buf].view(np.int8))
        starts = (edges == 1).nonzero()[0] + 1
        lengths = (edges == -1).nonzero()[0] + 1 - starts
        # buf read as uint64 at every byte offset (unaligned reads are fine on the platforms NumPy
        # supports); masking keeps only the word's own bytes.
        at_offset = np.ndarray((buf.size - 7,), "<u8", buffer=buf, strides=(1,))
        k1 = at_offset[starts] & _MASKS[np.minimum(lengths, 8)]
        k2 = at_offset[starts + 8] & _MASKS[np.clip(lengths - 8, 0, 8)]
        offsets = starts - 1
        with self._lock:
            # Words longer than the key, and words with a NUL byte (b"a" and b"a\x00" would share a
            # key; no text tagger.text produces has one), are resolved one by one.
            one_by_one = lengths > KEY_BYTES
            if b"\x00" in words:
                nul = np.zeros(buf.size + 1, np.int64)
                np.cumsum(buf == 0, out=nul[1:])
                one_by_one |= nul[starts + lengths] > nul[starts]
            out = self._table.get(k1, k2)
            missing = (out < 0) & ~one_by_one
            if missing.any():
                self._learn(words, k1, k2, offsets, lengths, missing, out)
            for i in one_by_one.nonzero()[0].tolist():
                out[i] = self._resolve(words[offsets[i]: offsets[i] + lengths[i]])
        # Which segment each word came from: the segments were joined with one space.
        seg_starts = np.zeros(len(segments), np.int64)
        np.cumsum(np.fromiter(map(len, segments), np.int64, len(segments))[:-1] + 1, out=seg_starts[1:])
        return out, np.bincount(seg_starts.searchsorted(offsets, side="right") - 1, minlength=len(segments))

    def _ids_small(self, segments: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        split = [s.split() for s in segments]
        counts = np.fromiter(map(len, split), np.int64, len(split))
        found = split[0] if len(split) == 1 else list(chain.from_iterable(split))
        ids = np.fromiter(map(self._small.get, found, repeat(-1)), np.int64, len(found))
        missing = (ids < 0).nonzero()[0]
        if missing.size:
            with self._lock:
                for i in missing.tolist():
                    word = found[i]
                    known = self._small.get(word)
                    if known is None:
                        known = self._resolve(word)
                        if len(self._small) < self._max_words:
                            self._small[word] = known
                    ids[i] = known
        return ids, counts

    def _learn(self, words: bytes, k1: np.ndarray, k2: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
               missing: np.ndarray, out: np.ndarray) -> None:
        at = missing.nonzero()[0]
        found: dict[bytes, int] = {}
        first: list[int] = []
        for i, o, n in zip(at.tolist(), offsets[at].tolist(), lengths[at].tolist()):
            word = words[o: o + n]
            if word not in found:
                found[word] = self._resolve(word)
                first.append(i)
            out[i] = found[word]
        room = max(0, self._max_words - self._table.count)
        if room:
            keep = np.array(first[:room], dtype=np.intp)
            self._table.add(k1[keep], k2[keep], out[keep])
