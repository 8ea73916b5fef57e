"""Arabic-first text normalisation and tokenisation: the one text pipeline.

Training, the server, batch tagging and Spark all call :func:`normalize` and :func:`tokenize`,
so a model never sees text prepared differently from the text it was trained on.

The rules are defined once, by the reference implementation (``str.translate`` with ``_TABLE``, a
lower-casing pass and a ``[^\\W_]+`` regex split). That reference costs ~130 µs for a 1,500-character
article, because ``str.translate`` looks every non-ASCII character up in a dict. The fast path gives
the same output ~6× faster: text is encoded into a private one-byte code page (a C lookup table),
normalised with ``bytes.translate`` (a 256-byte table, about a nanosecond a character) and split with
``bytes.split``. Its tables are derived from the reference rules at import, and any text with a
character outside the code page (emoji, presentation forms, other scripts) takes the reference path,
so the two can never disagree.
"""
from __future__ import annotations

import codecs
import re
import sys
import unicodedata
from collections.abc import Sequence
from typing import Final

import numpy as np

from tagger.kernels import DELETED, OUTSIDE

__all__ = [
    "normalize", "tokenize", "LineStartFilter", "stem", "analyze", "document_tokens", "document_word_bytes", "document_units",
    "WORD_UNITS", "STEM_TABLES", "code_page_bytes", "word_stem",
    "NORMALIZATION_VERSION",
]

#: Bumped whenever the output of ``normalize``/``tokenize`` changes; stored in model manifests so a
#: model is never served with a text pipeline it was not trained with.
NORMALIZATION_VERSION: Final = 3

#: Invisible characters that carry no letter: zero-width space/joiners, direction marks, word joiner,
#: soft hyphen, bidi embeddings and isolates, BOM. Inside a word they are deleted, so the word is the
#: same word (v3; before, they split it in two).
_INVISIBLE: Final = (0x00AD, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064,
                     0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF)
#: Arabic presentation forms (contextual shapes and ligatures of PDF and legacy text): read as their
#: base letters (v3), by Unicode compatibility decomposition, then folded like any other letter.
_PRESENTATION_FORMS: Final = (range(0xFB50, 0xFE00), range(0xFE70, 0xFF00))


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for ch in "أإآٱ":  # hamza / madda / wasla forms of alef
        table[ord(ch)] = "ا"
    table[ord("ى")] = "ي"  # alef maqsura
    table[ord("ة")] = "ه"  # ta marbuta
    table[ord("ک")] = "ك"  # Persian keheh
    table[ord("ی")] = "ي"  # Persian yeh
    table[ord("ـ")] = None  # tatweel
    # harakat, tanween, shadda, sukun, maddah/hamza marks above/below, superscript alef
    for cp in list(range(0x064B, 0x0660)) + [0x0670]:
        table[cp] = None
    for cp in range(0x0610, 0x061B):  # honorific / Quranic marks
        table[cp] = None
    for i in range(10):
        table[0x0660 + i] = str(i)  # Arabic-Indic digits
        table[0x06F0 + i] = str(i)  # Extended (Persian) digits
    # Latin upper case → lower case here too, so no separate .lower() pass is needed.
    for cp in range(ord("A"), ord("Z") + 1):
        table[cp] = chr(cp + 32)
    for cp in _INVISIBLE:
        table[cp] = None
    base = dict(table)
    for block in _PRESENTATION_FORMS:
        for cp in block:
            if cp in table:
                continue
            decomposed = unicodedata.normalize("NFKC", chr(cp))
            if decomposed != chr(cp):
                # The base letters' own folding applies too (a hamza-on-alef form becomes a bare alef).
                table[cp] = decomposed.translate(base) or None
    return table


_TABLE: Final = _build_table()
_WS: Final = re.compile(r"\s+")
# Words are runs of letters/digits; after normalize() there are no combining marks left to split them.
_TOKEN: Final = re.compile(r"[^\W_]+")


# ------------------------------------------------------------------------------ reference path
def _fold_reference(text: str) -> str:
    """Character-level normalisation (the reference): fold letters and digits, drop marks, lower Latin."""
    text = text.translate(_TABLE)
    return text if text.isascii() else text.lower()  # non-ASCII Latin (É, Ü …); Arabic is unaffected


def _normalize_reference(text: str) -> str:
    """The definition of :func:`normalize`; the fast path must match it exactly."""
    return _WS.sub(" ", _fold_reference(text)).strip()


def _tokenize_reference(text: str) -> list[str]:
    """The definition of :func:`tokenize`."""
    return _TOKEN.findall(_normalize_reference(text))


# ----------------------------------------------------------------------------------- fast path
# The code page: all of ASCII, then the non-ASCII characters Arabic news text actually uses (chosen
# from the 23k-article corpus and the BBC dev set, where about 1 text in 900 falls outside it).
_CODE_PAGE_EXTRA: Final = "".join(
    [
        "\u060c\u061b\u061c\u061f",  # Arabic comma, semicolon, letter mark, question mark
        *map(chr, range(0x0621, 0x063B)),  # hamza … ghain
        *map(chr, range(0x0640, 0x0660)),  # tatweel, feh … yeh, harakat and other marks
        *map(chr, range(0x0660, 0x066E)),  # Arabic-Indic digits, percent, decimal/thousands separators, star
        *map(chr, range(0x0670, 0x0674)),  # superscript alef, alef wasla, wavy-hamza alefs
        "\u067e\u0686\u0698\u06a4\u06a9\u06af\u06be\u06cc",  # Persian/Maghrebi letters: پ چ ژ ڤ ک گ ھ ی
        *map(chr, range(0x06F0, 0x06FA)),  # extended (Persian) digits
        "\u00a0\u00ab\u00bb\u00d7\u00e9\u00b0\u00b7\u00ae\u00a9",  # nbsp « » × é ° · ® ©
        "\u2013\u2014\u2018\u2019\u201c\u201d\u2022\u2026",  # dashes, curly quotes, bullet, ellipsis
        "\u200b\u200c\u200d\u200e\u200f",  # zero-width space / (non-)joiner, LRM, RLM
        "\u202a\u202b\u202c\u202d\u202e\u2067\u2068\u2069",  # bidi embeddings and isolates
    ]
)
_CODE_PAGE: Final = "".join(map(chr, range(128))) + _CODE_PAGE_EXTRA


def _build_fast_tables() -> tuple[object, bytes, bytes, bytes]:
    """The code page's encoding map and three byte tables, derived from the reference rules.

    ``norm`` maps a byte to its normalised character (whitespace → space), ``word`` to its normalised
    character if that is a word character (``[^\\W_]``) and to a space otherwise, and ``delete`` lists
    the bytes whose characters normalisation removes.
    """
    if len(_CODE_PAGE) != 256 or len(set(_CODE_PAGE)) != 256:
        raise RuntimeError(f"the text code page must hold 256 distinct characters, not {len(set(_CODE_PAGE))}")
    encoding_map = codecs.charmap_build(_CODE_PAGE)
    if isinstance(encoding_map, dict):  # the C fast path needs a BMP table with "\x00" first
        raise RuntimeError("the text code page did not build a C encoding map")
    position = {c: i for i, c in enumerate(_CODE_PAGE)}
    norm, word, delete = bytearray(range(256)), bytearray(range(256)), bytearray()
    for i, ch in enumerate(_CODE_PAGE):
        # Per-character equivalent of the reference: translate, then lower-case. The code page holds
        # no character whose lower case depends on context (Σ) or is longer than one character.
        out = ch.translate(_TABLE).lower()
        if out == "":
            delete.append(i)
            continue
        if len(out) != 1 or out not in position:
            raise RuntimeError(f"code page character {ch!r} normalises to {out!r}, which is not in the code page")
        norm[i] = 0x20 if out.isspace() else position[out]
        word[i] = position[out] if _TOKEN.fullmatch(out) else 0x20
    return encoding_map, bytes(norm), bytes(word), bytes(delete)


_ENCODING_MAP, _NORM_BYTES, _WORD_BYTES, _DELETE_BYTES = _build_fast_tables()
# As _NORM_BYTES, but the line breaks of str.splitlines() inside the code page stay line breaks.
_LINE_BREAKS: Final = "\n\r\x0b\x0c\x1c\x1d\x1e"
_FOLD_BYTES: Final = bytes(0x0A if chr(i) in _LINE_BREAKS else b for i, b in enumerate(_NORM_BYTES))
_encode: Final = codecs.charmap_encode
_decode: Final = codecs.charmap_decode


def _word_bytes(text: str) -> bytes | None:
    """The text normalised in the code page with every non-word character a space; None if it does
    not fit the code page."""
    try:
        raw = _encode(text, "strict", _ENCODING_MAP)[0]
    except UnicodeEncodeError:
        return None
    return raw.translate(_WORD_BYTES, _DELETE_BYTES)


# ------------------------------------------------------------------------------- public API
def normalize(text: str) -> str:
    """Fold Arabic letter variants, drop diacritics and tatweel, map digits, lower Latin, squeeze spaces."""
    try:
        raw = _encode(text, "strict", _ENCODING_MAP)[0]
    except UnicodeEncodeError:
        return _normalize_reference(text)
    # Whitespace of every kind is a space byte by now, so bytes.split() squeezes and strips it.
    return _decode(b" ".join(raw.translate(_NORM_BYTES, _DELETE_BYTES).split()), "strict", _CODE_PAGE)[0]


class LineStartFilter:
    """Tells texts with no line starting with any of ``words`` (after normalisation and any non-word
    characters) from texts that may have one, in one regex pass over the whole text instead of a
    pass per line. The page parser uses it to skip line-by-line work on plain articles.

    ``words`` must already be normalised (``normalize(w) == w``).
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        bad = [w for w in words if not w or normalize(w) != w or not _TOKEN.fullmatch(w)]
        if bad:
            raise ValueError(f"LineStartFilter words must be normalised single words, got {bad}")
        # "\n" first: a literal start lets the regex engine jump from line break to line break.
        self._str = re.compile(r"\n\W*(?:" + "|".join(map(re.escape, words)) + ")")
        non_word = b"".join(re.escape(bytes([i])) for i, ch in enumerate(_CODE_PAGE) if re.fullmatch(r"\W", ch))
        encoded = [_encode(w, "strict", _ENCODING_MAP)[0] for w in words]
        self._bytes = re.compile(b"\n[" + non_word + b"]*(?:" + b"|".join(map(re.escape, encoded)) + b")")

    def plain_lines(self, text: str) -> list[str] | None:
        """The text's non-empty lines, stripped, if no line starts with one of the words; else None."""
        try:
            raw = _encode(text, "strict", _ENCODING_MAP)[0]
        except UnicodeEncodeError:
            folded = "\n".join(map(_fold_reference, text.splitlines()))
            if self._str.search("\n" + folded):
                return None
            return [line for line in map(str.strip, text.splitlines()) if line]
        folded_bytes = raw.translate(_FOLD_BYTES, _DELETE_BYTES)
        if self._bytes.search(b"\n" + folded_bytes):
            return None
        # Line breaks other than "\n" (\r, \f, ...) are "\n" after folding; with none of them,
        # str.split("\n") is str.splitlines() (bar empty lines, which are dropped), and much cheaper.
        lines = text.split("\n") if folded_bytes.count(b"\n") == raw.count(b"\n") else text.splitlines()
        return [line for line in map(str.strip, lines) if line]


def tokenize(text: str) -> list[str]:
    """Normalise then split into word tokens. Diacritics never split a word."""
    words = _word_bytes(text)
    if words is None:
        return _tokenize_reference(text)
    return _decode(words, "strict", _CODE_PAGE)[0].split()


# Light stemming: Arabic glues conjunctions, prepositions and the article to the word
# (والعقوبات، بالعقوبات، للعقوبات) and suffixes for number and pronouns. Folding those onto one stem
# lets a model learn "sanctions" once rather than per clitic form, which matters most for outlets
# whose phrasing it never saw. Only the longest matching affix of each kind is removed, and a stem
# keeps at least three letters, so short roots survive.
_PREFIXES: Final = ("وال", "بال", "كال", "فال", "لل", "ال", "و")
_SUFFIXES: Final = ("هما", "كما", "ات", "ان", "ون", "ين", "يه", "ها", "هم", "ه", "ي")
_STEM_CACHE_MAX: Final = 500_000


# The affixes by length, longest first: "the first listed affix that matches and leaves three
# letters" is the same as "the longest such affix", which set lookups of word[:k] find without a
# startswith() call per affix.
_PREFIX_SETS: Final = tuple((k, frozenset(p for p in _PREFIXES if len(p) == k)) for k in (3, 2, 1))
_SUFFIX_SETS: Final = tuple((k, frozenset(x for x in _SUFFIXES if len(x) == k)) for k in (3, 2, 1))
assert tuple(sorted(_PREFIXES, key=len, reverse=True)) == _PREFIXES
assert tuple(sorted(_SUFFIXES, key=len, reverse=True)) == _SUFFIXES


def _stem(word: str) -> str:
    if len(word) <= 3 or not "\u0621" <= word[0] <= "\u064a":
        return word
    for k, prefixes in _PREFIX_SETS:
        if len(word) - k >= 3 and word[:k] in prefixes:
            word = word[k:]
            break
    for k, suffixes in _SUFFIX_SETS:
        if len(word) - k >= 3 and word[-k:] in suffixes:
            word = word[:-k]
            break
    return word


class _StemCache(dict):
    """word → stem, filled on a miss. ``cache[word]`` stays a C-level dict lookup on a hit, so
    ``map(cache.__getitem__, words)`` stems a document without a Python call per word.
    Bounded: archives have a long tail of rare words."""

    __slots__ = ()

    def __missing__(self, word: str) -> str:
        # Interned, as the featuriser's vocabulary is: its lookups then match by identity.
        out = sys.intern(_stem(word))
        if len(self) < _STEM_CACHE_MAX:
            self[word] = out
        return out


class _ByteStemCache(dict):
    """Code-page bytes of a normalised word → its stem: the fast path never builds the word's str."""

    __slots__ = ()

    def __missing__(self, word: bytes) -> str:
        out = _STEM_CACHE[_decode(word, "strict", _CODE_PAGE)[0]]
        if len(self) < _STEM_CACHE_MAX:
            self[word] = out
        return out


_STEM_CACHE: Final = _StemCache()
_BYTE_STEM_CACHE: Final = _ByteStemCache()
_stem_of: Final = _STEM_CACHE.__getitem__
_stem_of_bytes: Final = _BYTE_STEM_CACHE.__getitem__


def stem(word: str) -> str:
    """Strip one clitic prefix and one suffix from a normalised Arabic word; other words pass through."""
    return _stem_of(word)


def analyze(text: str) -> list[str]:
    """Normalise, tokenise and stem: the model's view of a text."""
    words = _word_bytes(text)
    if words is None:
        return list(map(_stem_of, _tokenize_reference(text)))
    return list(map(_stem_of_bytes, words.split()))


def document_tokens(title: str, body: str) -> list[str]:
    """The model's view of an article. The headline is counted twice: it states the subject."""
    if not title:
        return analyze(body)
    head = analyze(title)
    return head + head + analyze(body)


# ------------------------------------------------------------------- word-level fast path
def document_word_bytes(title: str, body: str) -> bytes | None:
    """:func:`document_tokens` one step early and unsplit: the same words, normalised but not yet
    stemmed, as space-separated code-page bytes (``word_stem(w)`` of each word of ``.split()`` gives
    the tokens). None when the text does not fit the code page; use :func:`document_tokens` then.

    The definition of what the featuriser's compiled path computes from :func:`document_units`
    with :data:`WORD_UNITS` (a test holds the two to the same bytes)."""
    body_words = _word_bytes(body)
    if body_words is None:
        return None
    if not title:
        return body_words
    title_words = _word_bytes(title)
    if title_words is None:
        return None
    return b" ".join((title_words, title_words, body_words))


def document_units(title: str, body: str) -> bytes:
    """The text behind :func:`document_word_bytes` as UTF-16 code units, for a compiled pass to
    fold through :data:`WORD_UNITS`: the title twice and the body, on separate lines. Encoding to
    UTF-16 is a near-copy of Python's own string storage, several times cheaper than the code page
    encoding (lone surrogates pass through, to be caught as characters outside the code page)."""
    return (f"{title}\n{title}\n{body}" if title else body).encode("utf-16-le", "surrogatepass")


def _word_units_table() -> np.ndarray:
    """UTF-16 code unit → the byte :func:`_word_bytes` turns its character into, DELETED if it
    removes it, OUTSIDE if the character is not in the code page (surrogates included)."""
    table = np.full(1 << 16, OUTSIDE, np.uint16)
    deleted = set(_DELETE_BYTES)
    for i, ch in enumerate(_CODE_PAGE):
        table[ord(ch)] = DELETED if i in deleted else _WORD_BYTES[i]
    return table


#: See :func:`_word_units_table`.
WORD_UNITS: Final = _word_units_table()


def code_page_bytes(word: str) -> bytes | None:
    """A normalised word in the one-byte code page (the form :func:`document_word_bytes` gives), or
    None if it does not fit it."""
    try:
        return _encode(word, "strict", _ENCODING_MAP)[0]
    except UnicodeEncodeError:
        return None


def _affix_rows(affixes: Sequence[str]) -> np.ndarray:
    """(length, code-page bytes read little-endian) per affix, in the given (longest first) order."""
    rows = []
    for a in affixes:
        raw = code_page_bytes(a)
        if raw is None:
            raise ValueError(f"affix {a!r} is outside the code page")
        rows.append((len(raw), int.from_bytes(raw, "little")))
    return np.array(rows, dtype=np.uint64).reshape(-1, 2)


#: What :func:`tagger.kernels.stem_spans` needs to stem code-page bytes as :func:`stem` stems a str:
#: which bytes are Arabic letters (U+0621–U+064A), and the affixes as byte rows.
STEM_TABLES: Final = (
    np.array([0x0621 <= ord(c) <= 0x064A for c in _CODE_PAGE], dtype=np.bool_),
    _affix_rows(_PREFIXES),
    _affix_rows(_SUFFIXES),
)


def word_stem(word: bytes) -> str:
    """The token (stem) of one word of :func:`document_word_bytes`, computed afresh. The featuriser
    stems the words its table can key in a compiled pass and remembers them; what reaches here is
    the rare rest (over 16 bytes), which the stem caches would only fill with an archive's tail."""
    return _stem(_decode(word, "strict", _CODE_PAGE)[0])
