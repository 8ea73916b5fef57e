"""The Document type and the scraped-page parser: the single way text enters the tagger.

Scraped pages carry parts that are not the article (date and source lines, the site's keyword tag
line, "read also" links with the linked story, app promotions, "you may like" teasers). Under
``../shared/topics.md`` those never add topics, so they are cut here, once, for every face
(server, batch, Spark, CLI, training), and ``Document.dropped`` records what was cut.

Page format (``../shared/examples/seed-article.txt``), one part per line, any part may be missing:

- the first non-empty line is the title (see :func:`parse_page` for when it is not);
- ``تاريخ النشر: ...`` is the date line;
- every other line is body, except:
- ``المصدر: ...`` is the source line, ``كلمات دلالية: ...`` the tag line;
- ``إقرأ أيضاً:`` (any spelling, see below) alone on its line starts the read-also part: it and
  everything after it is dropped, since on these pages what follows is the linked story, not the
  article; the marker followed by a headline on the same line is an in-article link, and only that
  line is dropped;
- an app promotion (``تابع أحدث الأخبار عبر تطبيق``, ``حمل تطبيق ...``) and a teaser line
  (``قد يهمك: ...``) are dropped wherever they are.

Markers are matched on :func:`tagger.text.normalize`-d lines, so hamza, tanween, diacritics and
tatweel variants do not matter.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from tagger.text import LineStartFilter, normalize

__all__ = ["Document", "parse_page", "from_fields", "clean_text", "MAX_TITLE_CHARS"]

#: A first line longer than this is never taken as a title.
MAX_TITLE_CHARS: Final = 200


@dataclass(frozen=True)
class Document:
    """One article as the tagger sees it, plus the page parts that were removed (``dropped``)."""

    id: str = ""
    title: str = ""
    body: str = ""
    tags: tuple[str, ...] = ()
    source: str = ""
    date: str = ""
    dropped: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """Title and body, the text the model is trained on and scores."""
        return (self.title + "\n" + self.body).strip()


# Matched against normalize(line) with format characters removed (see _marker_text): alef forms
# folded, diacritics gone, whitespace squeezed, ة→ه. Any marker may follow non-word characters (a
# bullet, a dash, a direction mark). (?!\w) stops a marker matching the start of a longer word
# (ايضاح, المصدريه ...); the date marker must be followed by punctuation, a digit or nothing
# ("تاريخ النشر في ..." is a headline about the history of publishing), a teaser by punctuation
# ("قد يهمك أن ..." is a sentence).
_MARKER: Final = re.compile(
    r"\W*(?:"
    r"(?P<read_also>اقرا\s?ايضا(?!\w))"
    r"|(?P<date>تاريخ\sالنشر\s*(?:[^\w\s]|\d|$))"
    r"|(?P<source>المصدر\s?[:：])"  # a colon is required: "المصدر" also starts ordinary sentences
    r"|(?P<tags>كلمات\sدلاليه(?!\w))"
    r"|(?P<teaser>قد\sيهمك(?:\sايضا)?\s*(?:[^\w\s]|$))"
    r")"
)
# Zero-width and direction characters (ZWSP/ZWNJ/ZWJ, LRM/RLM, bidi embeddings and isolates, word
# joiner, BOM, soft hyphen): invisible on the page, so they must not hide a marker.
_FORMAT_CHARS: Final = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# A read-also marker followed by a linked headline on the same line.
_READ_ALSO_INLINE: Final = re.compile(r"\W*اقرا\s?ايضا\W*\w")
# Verbs like حمل/تابع open many news sentences ("حمل الوزير ...", "تابع الوزير تطبيق الخطة"), and
# تطبيق also means "implementation", so a promotion must name the app right after the verb ("حمل
# تطبيق ...") or through عبر/على/من/في ("تابع أحدث الأخبار عبر تطبيق ..."; على is علي once
# normalised), be short, and not read as a finished sentence.
_PROMO_START: Final = re.compile(r"\W*(?:تابع(?:وا|ونا)?|حمل(?:وا)?|نزل(?:وا)?)\s")
_PROMO_APP: Final = re.compile(
    r"\W*(?:تابع(?:وا|ونا)?|حمل(?:وا)?|نزل(?:وا)?)\s(?:ال)?تطبيق|(?<!\w)(?:عبر|علي|من|في)\s(?:ال)?تطبيق")
_PROMO_MAX_WORDS: Final = 12
_SENTENCE_END: Final = tuple(".!?؟…")
# A plain-text first line ending like this is a sentence or an introduction, not a headline.
# "?", "؟" and "!" are left out: about 1 in 18 corpus headlines ends with one of them.
_NOT_TITLE_END: Final = tuple(".…:;؛,،")
_CLOSERS: Final = "\"'»”’)]"
_TAG_SPLIT: Final = re.compile(r"[\s,،|]+")
# Where a valued marker's value starts in the line (format characters removed, not normalised):
# after any leading non-word characters, its words (two, one, two) and an optional colon or other
# separator.
_MARKER_VALUE: Final = {
    kind: re.compile(r"\W*" + r"\S+\s+" * (words - 1) + r"[^\s:：]+\s*[:：\-–—/|؛]?\s*")
    for kind, words in (("date", 2), ("source", 1), ("tags", 2))
}
# Separators a tag line uses between tags; they are not tags.
_TAG_PUNCT: Final = re.compile(r"^[^\w]+$")


def _marker_text(line: str) -> str:
    return _FORMAT_CHARS.sub("", normalize(line))


def _marker_value(kind: str, line: str) -> str:
    """What follows a date, source or tag marker in ``line``'s own (un-normalised) text."""
    visible = _FORMAT_CHARS.sub("", line)
    m = _MARKER_VALUE[kind].match(visible)
    return visible[m.end():].strip() if m else ""


def _tags_of(line: str) -> list[str]:
    """The tags of a tag line (separators such as ؛ / - are not tags)."""
    return [t for t in _TAG_SPLIT.split(_marker_value("tags", line)) if t and not _TAG_PUNCT.match(t)]


def _classify(line: str) -> str | None:
    """The kind of page part this line is, or None for article text (or a blank line)."""
    norm = _marker_text(line)
    m = _MARKER.match(norm)
    if m:
        return m.lastgroup
    if (
        _PROMO_START.match(norm)
        and _PROMO_APP.search(norm)
        and len(norm.split()) <= _PROMO_MAX_WORDS
        and not norm.endswith(_SENTENCE_END)
    ):
        return "app_promo"
    return None


def _dedupe(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i)) if items else ()


@dataclass
class _Parts:
    body: list[str] = field(default_factory=list)
    date: str = ""
    source: str = ""
    tags: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    starts_with_body: bool = False  # the first non-empty line is article text (a title candidate)


# Every page part starts its line with one of these words (after normalisation and any non-word
# characters): _MARKER's and the promotions' first words. A text with none of them at a line start
# is all article, which one pass over the whole text establishes; most articles are like that.
_PART_WORDS: Final = LineStartFilter(["اقرا", "تاريخ", "المصدر", "كلمات", "قد", "تابع", "حمل", "نزل"])


def _split_parts(text: str) -> _Parts:
    """The one cleaning pass: sort lines into body and page parts (used for pages and plain text)."""
    body = _PART_WORDS.plain_lines(text)
    if body is not None:
        return _Parts(body=body, starts_with_body=bool(body))
    return _split_parts_line_by_line(text)


def _split_parts_line_by_line(text: str) -> _Parts:
    parts = _Parts()
    lines = text.splitlines()
    seen_any = False
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        kind = _classify(line)
        if not seen_any:
            parts.starts_with_body = kind is None
            seen_any = True
        if kind is None:
            parts.body.append(line)
            continue
        parts.dropped.append(kind)
        if kind == "read_also":
            if _READ_ALSO_INLINE.match(_marker_text(line)):
                # "اقرأ أيضا: <headline>" on one line is a link inside the article (CNN does this
                # mid-article); the article goes on after it, so only the link line goes.
                continue
            # A marker on its own line introduces a glued story: the tail is cut unread; only note
            # which other page parts went with it, and keep the page's tags if its tag line is there.
            for later in lines[i + 1:]:
                k = _classify(later)
                if k:
                    parts.dropped.append(k)
                    if k == "tags":
                        parts.tags.extend(_tags_of(later.strip()))
            break
        if kind == "tags":
            parts.tags.extend(_tags_of(line))
        elif kind == "date":
            parts.date = parts.date or _marker_value(kind, line)  # the first date/source line wins
        elif kind == "source":
            parts.source = parts.source or _marker_value(kind, line)
    return parts


def _document(parts: _Parts, id: str, title: str, body: list[str]) -> Document:
    return Document(
        id=id,
        title=title,
        body="\n".join(body),
        tags=_dedupe(parts.tags),
        source=parts.source,
        date=parts.date,
        dropped=_dedupe(parts.dropped),
    )


def clean_text(text: str) -> str:
    """Article text with page parts removed (the body cleaning of :func:`parse_page`)."""
    return "\n".join(_split_parts(text).body)


def _looks_like_title(line: str, *, page: bool, n_body: int) -> bool:
    if len(line) > MAX_TITLE_CHARS:
        return False
    if page:
        return True
    return n_body > 1 and not line.rstrip(_CLOSERS).endswith(_NOT_TITLE_END)


def parse_page(raw: str, id: str = "") -> Document:
    """Parse a scraped page (or plain text) into a Document; never raises for a str.

    Title rule: the first non-empty line is the title when it is article text (not a marker line),
    at most MAX_TITLE_CHARS long, and either the input has any page marker (scraped pages always
    open with the headline) or, for plain text, there is more than one non-empty line and the
    first does not end (before closing quotes) like a sentence or clause: . … : ; ؛ , ،
    (a final ? ؟ ! is allowed, as headlines often ask or exclaim). Otherwise there is no title
    and all text is body.

    Tags: the tag line is split on whitespace, commas, "،" and "|", duplicates removed in order.
    Multi-word site tags ("كوريا الشمالية") come out as separate words; the line gives no reliable
    boundaries, and under topics.md tag lists never decide topics anyway.
    """
    if not isinstance(raw, str):
        raise TypeError(f"parse_page: raw must be str, got {type(raw).__name__}")
    if not isinstance(id, str):
        raise TypeError(f"parse_page: id must be str, got {type(id).__name__}")
    parts = _split_parts(raw.removeprefix("\ufeff"))  # a byte-order mark is not part of the title
    body = parts.body
    title = ""
    if (
        parts.starts_with_body
        and body
        and _looks_like_title(body[0], page=bool(parts.dropped), n_body=len(body))
    ):
        title, body = body[0], body[1:]
    return _document(parts, id, title, body)


def from_fields(
    *,
    id: str = "",
    title: str = "",
    text: str = "",
    raw: str = "",
    tags: list[str] | tuple[str, ...] = (),
) -> Document:
    """Build a Document from structured input (JSON/CSV rows, gRPC messages).

    With ``raw``: the page is parsed; an explicit ``title`` replaces the parsed one and explicit
    ``tags`` are appended. Without it: ``title`` is the title and ``text`` the body, cleaned of
    read-also tails, promotions and marker lines like a page body. Giving both ``raw`` and ``text``
    is a ValueError (which one is the article would be a guess). Wrong types raise TypeError
    naming the field.
    """
    for name, value in (("id", id), ("title", title), ("text", text), ("raw", raw)):
        if not isinstance(value, str):
            raise TypeError(f"document field {name!r} must be str, got {type(value).__name__}")
    if not isinstance(tags, (list, tuple)):
        raise TypeError(f"document field 'tags' must be a list of str, got {type(tags).__name__}")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise TypeError(f"document field 'tags' item {i} must be str, got {type(tag).__name__}")
    if raw.strip() and text.strip():
        raise ValueError("document has both 'raw' and 'text'; give one of them")

    title = " ".join(title.split())  # the title is one line: Document.text joins it with "\n"
    if raw.strip():
        doc = parse_page(raw, id)
        if title:
            # The explicit title replaces the page's headline. But a first line that reads as a
            # sentence was taken as the title only because a page opens with one: with the headline
            # given separately it is the article's first paragraph, so it goes back to the body.
            first = doc.title
            if first and " ".join(first.split()) != title and first.rstrip(_CLOSERS).endswith(_NOT_TITLE_END):
                doc = replace(doc, body=first + ("\n" + doc.body if doc.body else ""))
            doc = replace(doc, title=title)
    else:
        parts = _split_parts(text)
        doc = _document(parts, id, title, parts.body)
    if tags:
        doc = replace(doc, tags=_dedupe((*doc.tags, *(t.strip() for t in tags))))
    return doc
