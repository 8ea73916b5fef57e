"""The model's evidence as words an editor can find: the explanation n-grams are stems
(``عقوب`` for العقوبات / بالعقوبات), so each is mapped back onto the article's own words by running
every surface word through the same text pipeline (:func:`tagger.text.analyze`) the model used."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tagger.artifacts import LoadedModel
from tagger.text import analyze

__all__ = ["Mark", "evidence_words", "explain", "marks", "segments"]

_CHUNK: Final = re.compile(r"\S+")


@dataclass(frozen=True)
class Mark:
    """Characters ``start:end`` of a text are evidence for ``topics``."""

    start: int
    end: int
    topics: tuple[str, ...]


def explain(loaded: LoadedModel, title: str, text: str, topics: Sequence[str], n: int = 5) -> dict[str, list[dict]]:
    """Evidence n-grams of ``topics`` for an article, as the API gives them (model.explain_row)."""
    model = loaded.model
    rows = model.featurizer.rows_documents([(title, text)])
    idx, vals = rows.row(0)
    return {t: [{"ngram": e.ngram, "weight": round(e.weight, 4)} for e in model.explain_row(idx, vals, t, n)]
            for t in topics if t in model.topics}


def _is_edge(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PSZ"


def _words(text: str) -> list[tuple[int, int, list[str]]]:
    """Whitespace-separated words of ``text`` (punctuation trimmed from their ends) with their stems."""
    out = []
    for m in _CHUNK.finditer(text):
        s, e = m.span()
        while s < e and _is_edge(text[s]):
            s += 1
        while e > s and _is_edge(text[e - 1]):
            e -= 1
        if s < e:
            stems = analyze(m.group())
            if stems:
                out.append((s, e, stems))
    return out


def _hits(flat: Sequence[tuple[int, str]], ngram: str) -> list[int]:
    """Indices of the words where ``ngram``'s stems occur in a row."""
    parts = ngram.split()
    out: list[int] = []
    for k in range(len(flat) - len(parts) + 1) if parts else ():
        if all(flat[k + j][1] == parts[j] for j in range(len(parts))):
            out.extend(wi for wi, _ in flat[k:k + len(parts)] if wi not in out)
    return out


def marks(text: str, evidence: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Mark]:
    """The words of ``text`` that carry each topic's evidence n-grams (a bigram marks both of its words,
    where they stand next to each other), in text order."""
    words = _words(text)
    flat = [(wi, stem) for wi, (_, _, stems) in enumerate(words) for stem in stems]
    hits: dict[int, list[str]] = {}
    for topic, items in evidence.items():
        for ev in items:
            for wi in _hits(flat, str(ev.get("ngram", ""))):
                if topic not in (topics := hits.setdefault(wi, [])):
                    topics.append(topic)
    return [Mark(words[wi][0], words[wi][1], tuple(hits[wi])) for wi in sorted(hits)]


def segments(text: str, found: Sequence[Mark]) -> list[tuple[str, tuple[str, ...]]]:
    """``text`` cut into (piece, topics) runs for rendering: topics is () for plain text."""
    out: list[tuple[str, tuple[str, ...]]] = []
    pos = 0
    for m in found:
        if m.start > pos:
            out.append((text[pos:m.start], ()))
        out.append((text[m.start:m.end], m.topics))
        pos = m.end
    if pos < len(text):
        out.append((text[pos:], ()))
    return out


def evidence_words(title: str, text: str, evidence: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[dict]]:
    """The API's ``evidence``: per topic, each n-gram with its weight and the article words it stands for."""
    parts = []
    for source in (title, text):
        words = _words(source)
        parts.append((source, words, [(wi, stem) for wi, (_, _, stems) in enumerate(words) for stem in stems]))
    out: dict[str, list[dict]] = {}
    for topic, items in evidence.items():
        entries = []
        for ev in items:
            found: list[str] = []
            for source, words, flat in parts:
                for wi in _hits(flat, str(ev.get("ngram", ""))):
                    word = source[words[wi][0]:words[wi][1]]
                    if word not in found:
                        found.append(word)
            entries.append({"ngram": ev.get("ngram"), "weight": ev.get("weight"), "words": found})
        out[topic] = entries
    return out
