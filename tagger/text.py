"""Arabic-first text normalisation and tokenisation: the one text pipeline.

Training, the server, batch tagging and Spark all call :func:`normalize` and :func:`tokenize`,
so a model never sees text prepared differently from the text it was trained on.
Normalisation is a single ``str.translate`` (C speed) plus a whitespace-free regex split.
"""
from __future__ import annotations

import re
from typing import Final

__all__ = ["normalize", "tokenize", "stem", "analyze", "document_tokens", "NORMALIZATION_VERSION"]

#: Bumped whenever the output of ``normalize``/``tokenize`` changes; stored in model manifests so a
#: model is never served with a text pipeline it was not trained with.
NORMALIZATION_VERSION: Final = 2


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
    return table


_TABLE: Final = _build_table()
_WS: Final = re.compile(r"\s+")
# Words are runs of letters/digits; after normalize() there are no combining marks left to split them.
_TOKEN: Final = re.compile(r"[^\W_]+")


def normalize(text: str) -> str:
    """Fold Arabic letter variants, drop diacritics and tatweel, map digits, lower Latin, squeeze spaces."""
    text = text.translate(_TABLE)
    if not text.isascii():
        text = text.lower()  # non-ASCII Latin (É, Ü …); Arabic is unaffected
    return _WS.sub(" ", text).strip()


def tokenize(text: str) -> list[str]:
    """Normalise then split into word tokens. Diacritics never split a word."""
    return _TOKEN.findall(normalize(text))


# Light stemming: Arabic glues conjunctions, prepositions and the article to the word
# (والعقوبات، بالعقوبات، للعقوبات) and suffixes for number and pronouns. Folding those onto one stem
# lets a model learn "sanctions" once rather than per clitic form, which matters most for outlets
# whose phrasing it never saw. Only the longest matching affix of each kind is removed, and a stem
# keeps at least three letters, so short roots survive.
_PREFIXES: Final = ("وال", "بال", "كال", "فال", "لل", "ال", "و")
_SUFFIXES: Final = ("هما", "كما", "ات", "ان", "ون", "ين", "يه", "ها", "هم", "ه", "ي")
_STEM_CACHE: dict[str, str] = {}
_STEM_CACHE_MAX: Final = 500_000


def _stem(word: str) -> str:
    if len(word) <= 3 or not "\u0621" <= word[0] <= "\u064a":
        return word
    for p in _PREFIXES:
        if word.startswith(p) and len(word) - len(p) >= 3:
            word = word[len(p):]
            break
    for s in _SUFFIXES:
        if word.endswith(s) and len(word) - len(s) >= 3:
            word = word[: -len(s)]
            break
    return word


def stem(word: str) -> str:
    """Strip one clitic prefix and one suffix from a normalised Arabic word; other words pass through."""
    out = _STEM_CACHE.get(word)
    if out is None:
        out = _stem(word)
        if len(_STEM_CACHE) < _STEM_CACHE_MAX:  # bounded: archives have a long tail of rare words
            _STEM_CACHE[word] = out
    return out


def analyze(text: str) -> list[str]:
    """Normalise, tokenise and stem: the model's view of a text."""
    get = _STEM_CACHE.get
    return [get(t) or stem(t) for t in tokenize(text)]


def document_tokens(title: str, body: str) -> list[str]:
    """The model's view of an article. The headline is counted twice: it states the subject."""
    head = analyze(title)
    return head + head + analyze(body)
