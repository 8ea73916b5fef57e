"""The compiled lookups behind featurisation: exact, growing, bounded, thread-safe."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from tagger.lookup import KEY_BYTES, IntMap, PairHashTable, WordIds


def test_pair_table_finds_every_key_and_only_those_through_growth() -> None:
    rng = np.random.default_rng(0)
    table = PairHashTable()
    keys = rng.integers(0, 2**63, size=(20_000, 2), dtype=np.int64).astype(np.uint64)
    keys = np.unique(keys, axis=0)
    values = np.arange(len(keys), dtype=np.int64)
    for part in np.array_split(np.arange(len(keys)), 7):  # several grow steps from 16 slots
        table.add(keys[part, 0], keys[part, 1], values[part])
    assert table.count == len(keys)
    np.testing.assert_array_equal(table.get(keys[:, 0], keys[:, 1]), values)
    absent = keys.copy()
    absent[:, 1] ^= np.uint64(1)  # differs in the second key only
    assert (table.get(absent[:, 0], absent[:, 1]) == -1).all()
    assert table.get(np.empty(0, np.uint64), np.empty(0, np.uint64)).size == 0


def test_pair_table_handles_keys_that_share_slots() -> None:
    """Consecutive small keys and a full probe chain: linear probing must walk past every neighbour."""
    table = PairHashTable(capacity=8)
    k1, ones = np.arange(8, dtype=np.uint64), np.ones(8, np.uint64)
    table.add(k1, ones, np.arange(8) * 10)
    np.testing.assert_array_equal(table.get(k1, ones), np.arange(8) * 10)
    with pytest.raises(ValueError, match=">= 0"):
        table.add(np.array([99], np.uint64), np.array([0], np.uint64), np.array([-5]))
    with pytest.raises(ValueError, match="reserved"):
        table.add(np.array([0], np.uint64), np.array([0], np.uint64), np.array([1]))


def _reference(words: bytes) -> list[int]:
    return [len(w) * 1000 + w[0] for w in words.split()]


TEXT = (b"  a bb\ta \x00 \x00\x00 \r\n ccc " + b"x" * 7 + b" " + b"y" * 8 + b" " + b"z" * 9 + b" " + b"w" * KEY_BYTES + b" "
        + b"v" * (KEY_BYTES + 1) + b" " + b"v" * (KEY_BYTES + 1) + b"u " + b"a")


@pytest.mark.parametrize("copies", [1, 400], ids=["one request", "a chunk"])
def test_word_ids_match_a_plain_split_and_lookup(copies: int) -> None:
    calls: list[bytes] = []

    def resolve(w: bytes) -> int:
        calls.append(w)
        return len(w) * 1000 + w[0]

    ids = WordIds(resolve)
    segments = [TEXT] * copies + [b"", b"   ", b"q"]
    got, counts = ids.ids(segments)
    assert got.tolist() == _reference(b" ".join(segments))
    assert counts.tolist() == [len(s.split()) for s in segments]
    # Each word that fits the exact key was resolved once however often it occurs; longer words may
    # be resolved at every meeting.
    exact = {w for w in TEXT.split() + [b"q"] if len(w) <= KEY_BYTES and w.strip(b"\x00")}
    assert sorted(c for c in calls if c in exact) == sorted(exact)
    calls.clear()
    assert ids.ids(segments)[0].tolist() == got.tolist()
    assert not set(calls) & exact
    got, counts = ids.ids([b""])
    assert got.size == 0 and counts.tolist() == [0]


@pytest.mark.parametrize("copies", [1, 400])
def test_word_ids_stop_remembering_at_the_cap_but_stay_correct(copies: int) -> None:
    ids = WordIds(lambda w: int(w), max_words=3)
    segments = [b" ".join(str(i).encode() for i in range(1, 50))] * copies
    for _ in range(2):
        assert ids.ids(segments)[0].tolist() == list(range(1, 50)) * copies
    assert len(ids) == 3


def test_word_ids_are_thread_safe() -> None:
    ids = WordIds(lambda w: int(w[1:]))
    texts = [b" ".join(b"w%d" % (i * 7919 % 50_000) for i in range(k, k + 3000)) for k in range(0, 24_000, 3000)]
    errors: list[str] = []

    def work(t: bytes) -> None:
        for _ in range(3):
            got = ids.ids([t])[0].tolist()
            if got != [int(w[1:]) for w in t.split()]:
                errors.append("mismatch")

    threads = [threading.Thread(target=work, args=(t,)) for t in texts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_words_with_nul_bytes_never_share_a_key() -> None:
    """b"a" and b"a\\x00" have the same 16 key bytes; the table must still tell them apart."""
    ids = WordIds(lambda w: len(w) * 1000 + w[0])
    words = [b"a", b"a\x00", b"abcdefgh", b"abcdefgh\x00", b"\x00a", b"b"]
    segments = [b" ".join(words)] * 600
    expected = [len(w) * 1000 + w[0] for w in words] * 600
    for _ in range(2):
        assert ids.ids(segments)[0].tolist() == expected


@pytest.mark.parametrize("n_queries", [50, 5_000])
def test_int_map_gets_values_in_query_order(n_queries: int) -> None:
    rng = np.random.default_rng(1)
    keys = rng.choice(10**10, size=3_000, replace=False).astype(np.int64)
    keys[0] = 0  # zero is a valid key
    values = rng.integers(0, 10**6, size=keys.size)
    m = IntMap(keys, values)
    lookup = dict(zip(keys.tolist(), values.tolist()))
    queries = np.where(rng.random(n_queries) < 0.5, rng.choice(keys, n_queries), rng.integers(0, 10**10, n_queries))
    expected = [lookup.get(q, -1) for q in queries.tolist()]
    assert m.get(queries).tolist() == expected
    assert IntMap(np.empty(0, np.int64), np.empty(0, np.int64)).get(queries).tolist() == [-1] * n_queries
    with pytest.raises(ValueError, match="duplicate"):
        IntMap(np.array([3, 3]), np.array([1, 2]))


def test_int_map_refuses_entries_that_do_not_fit_a_slot_and_keeps_the_extremes_that_do() -> None:
    """Key + 1 and value share one uint64: 40 + 24 bits fit, 41 + 24 do not."""
    keys, values = np.array([2**40 - 2, 0, 5]), np.array([2**24 - 1, 0, 7])
    assert IntMap(keys, values).get(np.array([2**40 - 2, 0, 5, 6, 2**40 - 1])).tolist() == [2**24 - 1, 0, 7, -1, -1]
    with pytest.raises(ValueError, match="do not fit"):
        IntMap(np.array([2**40 - 1]), np.array([2**24 - 1]))
    with pytest.raises(ValueError, match="non-negative"):
        IntMap(np.array([1]), np.array([-1]))


def test_word_ids_refuse_segment_ends_that_do_not_cover_the_buffer() -> None:
    """The compiled loop trusts seg_ends; words past the last end would be counted out of bounds."""
    from tagger.kernels import PAD_WORDS

    words = b"ab cd ef gh"
    buf64 = np.zeros(len(words) // 8 + 1 + PAD_WORDS, np.uint64)
    buf64.view(np.uint8)[: len(words)] = np.frombuffer(words, np.uint8)
    ids = WordIds(len)
    got, counts = ids.ids_buffer(buf64, len(words), np.array([5, 11]))
    assert got.tolist() == [2, 2, 2, 2] and counts.tolist() == [2, 2]
    for bad in ([2], [], [8, 5, 11], [5, 12]):
        with pytest.raises(ValueError, match="seg_ends"):
            ids.ids_buffer(buf64, len(words), np.array(bad, np.int64))
    with pytest.raises(ValueError, match="padding"):
        ids.ids_buffer(buf64[:2], len(words), np.array([11]))


def test_kernels_work_where_numba_cannot_cache() -> None:
    """A read-only install with no writable home leaves numba nowhere to cache: the kernels must
    still import and run (compiled per process), not fail at import."""
    import subprocess
    import sys

    code = (
        "import numba.core.caching as c; c.CacheImpl._locator_classes = []\n"
        "import numpy as np\n"
        "from tagger.lookup import WordIds\n"
        "ids, counts = WordIds(len).ids([b'ab c', b'defg'])\n"
        "assert ids.tolist() == [2, 1, 4] and counts.tolist() == [2, 1], (ids, counts)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("max_words", [0, 3, 500_000])
def test_words_resolved_in_bulk_equal_words_resolved_one_by_one(max_words: int) -> None:
    """The compiled bulk resolver (keyable words) and the one-by-one resolver must give the same ids
    and remember the same words, up to the cap."""
    def one(w: bytes) -> int:
        return len(w) * 1000 + w[0]

    def bulk(buf: np.ndarray, buf64: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return lengths * 1000 + buf[starts]

    segments = [TEXT] * 50 + [b"", b"q", b"r s r"]
    plain, fast = WordIds(one, max_words), WordIds(one, max_words, bulk)
    for _ in range(2):
        got = fast.ids(segments)[0].tolist()
        assert got == plain.ids(segments)[0].tolist() == _reference(b" ".join(segments))
        assert len(fast) == len(plain) <= max_words
