"""Weak labels: labelling functions kept as data (keyword rules, section map) and their audit.

A weak label matrix holds, per article and topic, 1 (positive), 0 (negative) or -1 (no opinion).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tagger.io import JSONProblem, loads_json
from tagger.taxonomy import Taxonomy
from tagger.text import analyze

__all__ = ["KeywordRules", "SectionRules", "ABSTAIN", "load_keyword_rules", "load_section_rules"]

ABSTAIN = -1


def _rules_text(name: str, path: Path | None, key: str) -> dict:
    """A rules file as a dict whose ``key`` maps to an object; anything else is a ValueError naming the file."""
    where = path or f"training/rules/{name}"
    try:
        raw = Path(path).read_text("utf-8") if path else resources.files("tagger.training.rules").joinpath(name).read_text("utf-8")
        data = loads_json(raw)
    except OSError as e:
        raise ValueError(f"{where}: cannot read the rules ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except JSONProblem as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise ValueError(f"{where}: expected a JSON object with a {key!r} object in it")
    return data


@dataclass(frozen=True)
class KeywordRules:
    """Per-topic phrase lists; a topic fires when its phrases occur ``min_count`` times or more."""

    topics: tuple[str, ...]
    phrases: tuple[tuple[tuple[str, ...], ...], ...]  # per topic, analysed phrases
    min_count: int

    def counts(self, tokens: Sequence[str]) -> np.ndarray:
        """How many phrase occurrences each topic's rule finds in a tokenised document."""
        unigrams = Counter(tokens)
        # Multi-word phrases are found as space-delimited substrings of the joined tokens.
        joined = " " + " ".join(tokens) + " "
        out = np.zeros(len(self.topics), dtype=np.int32)
        for j, plist in enumerate(self.phrases):
            out[j] = sum(unigrams[ph[0]] if len(ph) == 1 else joined.count(" " + " ".join(ph) + " ") for ph in plist)
        return out

    def fire(self, tokens: Sequence[str]) -> np.ndarray:
        """Boolean per topic: does the rule fire on this document?"""
        return self.counts(tokens) >= self.min_count


def load_keyword_rules(taxonomy: Taxonomy, path: Path | None = None) -> KeywordRules:
    """Load keyword rules (default: the packaged ``training/rules/keywords.json``). Topics without rules
    get none (a new topic can start with no keywords); unknown topic ids are rejected."""
    data = _rules_text("keywords.json", path, "topics")
    where = f"keyword rules {path or 'training/rules/keywords.json'}"
    taxonomy.validate(list(data["topics"]), where=where)
    min_count = data.get("min_count", 3)
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"{where}: min_count must be an int >= 1")
    phrases = []
    for t in taxonomy.ids:
        terms = data["topics"].get(t, [])
        if not isinstance(terms, list) or not all(isinstance(x, str) and x.strip() for x in terms):
            raise ValueError(f"{where}: topic '{t}' needs a list of non-empty strings")
        phrases.append(tuple(dict.fromkeys(tuple(analyze(x)) for x in terms if analyze(x))))
    return KeywordRules(taxonomy.ids, tuple(phrases), min_count)


@dataclass(frozen=True)
class SectionRules:
    """Outlet section → topics it implies (1) and topics it rules out (0)."""

    topics: tuple[str, ...]
    rules: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

    def labels(self, sections: Sequence[str]) -> np.ndarray:
        """Weak label row for an article filed under ``sections``. Positives win over negatives."""
        row = np.full(len(self.topics), ABSTAIN, dtype=np.int8)
        for s in sections:
            if s in self.rules:
                for t in self.rules[s][1]:
                    row[self.topics.index(t)] = 0
        for s in sections:
            if s in self.rules:
                for t in self.rules[s][0]:
                    row[self.topics.index(t)] = 1
        return row


def load_section_rules(taxonomy: Taxonomy, path: Path | None = None) -> SectionRules:
    data = _rules_text("sections.json", path, "sections")
    where = f"section rules {path or 'training/rules/sections.json'}"
    rules = {}
    for sec, r in data["sections"].items():
        lists = {k: r.get(k, []) if isinstance(r, dict) else None for k in ("positive", "negative")}
        if any(not isinstance(v, list) or not all(isinstance(t, str) for t in v) for v in lists.values()):
            raise ValueError(f"{where}, section {sec!r}: expected an object with 'positive' and 'negative' lists "
                             "of topic ids")
        pos = tuple(taxonomy.validate(lists["positive"], where=f"{where}, section {sec}"))
        neg = tuple(taxonomy.validate(lists["negative"], where=f"{where}, section {sec}"))
        rules[sec] = (pos, neg)
    return SectionRules(taxonomy.ids, rules)
