"""The topic taxonomy: the one list of topic ids every part of the project validates against.

The packaged ``tagger/data/topics.json`` is the machine-readable copy of ``../shared/topics.md``
(a test keeps the two in agreement). Gold files, predictions, model manifests and requests all
check their topic ids through :meth:`Taxonomy.validate`, so a typo fails loudly where it entered.
"""
from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Final

__all__ = [
    "Topic",
    "Taxonomy",
    "UnknownTopicError",
    "default_taxonomy",
    "MISSION_TOPICS",
    "TAXONOMY_VERSION",
]

#: The format version of ``topics.json`` this module reads and writes.
TAXONOMY_VERSION: Final = 1

#: The topics the project is judged on first (reported separately from micro-F1).
MISSION_TOPICS: Final = ("diplomacy", "military", "sanctions")

_ID_RE: Final = re.compile(r"[a-z][a-z0-9_]*")


class UnknownTopicError(ValueError):
    """A topic id that is not in the taxonomy (or is not a string), with where it came from."""

    def __init__(self, message: str, *, unknown: tuple[object, ...] = (), where: str = "") -> None:
        super().__init__(message)
        self.unknown = unknown
        self.where = where


@dataclass(frozen=True)
class Topic:
    """One topic: its stable id, display names and the annotation rule text from topics.md."""

    id: str
    ar: str
    en: str
    definition: str
    includes: str
    excludes: str


_TOPIC_FIELDS: Final = tuple(f.name for f in fields(Topic))


class Taxonomy:
    """An immutable, ordered, validated set of topics; the order is the column order of score matrices."""

    __slots__ = ("_topics", "_ids", "_index")

    _topics: tuple[Topic, ...]
    _ids: tuple[str, ...]
    _index: dict[str, int]

    def __init__(self, topics: Iterable[Topic]) -> None:
        topics = tuple(topics)
        _check_topics(topics)
        object.__setattr__(self, "_topics", topics)
        object.__setattr__(self, "_ids", tuple(t.id for t in topics))
        object.__setattr__(self, "_index", {t.id: i for i, t in enumerate(topics)})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Taxonomy is immutable; use with_topic() to make a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Taxonomy is immutable")

    @property
    def topics(self) -> tuple[Topic, ...]:
        """The topics, in taxonomy order."""
        return self._topics

    @property
    def ids(self) -> tuple[str, ...]:
        """The topic ids, in taxonomy order."""
        return self._ids

    def __contains__(self, topic_id: object) -> bool:
        return isinstance(topic_id, str) and topic_id in self._index

    def __len__(self) -> int:
        return len(self._topics)

    def __iter__(self) -> Iterator[Topic]:
        return iter(self._topics)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Taxonomy) and self._topics == other._topics

    def __hash__(self) -> int:
        return hash(self._topics)

    def __repr__(self) -> str:
        return f"Taxonomy({', '.join(self._ids)})"

    def get(self, topic_id: str) -> Topic:
        """The topic with this id; raises UnknownTopicError (never returns None) if there is none."""
        return self._topics[self.index(topic_id)]

    def index(self, topic_id: str) -> int:
        """The position of this topic id (its column in score matrices); UnknownTopicError if unknown."""
        if not isinstance(topic_id, str):
            raise self._error([], "", non_strings=[topic_id])
        try:
            return self._index[topic_id]
        except KeyError:
            raise self._error([topic_id], "") from None

    def validate(self, ids: Iterable[str], where: str) -> list[str]:
        """Check topic ids from ``where`` (e.g. "gold file dev.jsonl line 7"); return them deduplicated, order kept.

        Raises UnknownTopicError naming every bad id, the source and the known ids.
        """
        # A bare string is iterable too and would be checked letter by letter.
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise UnknownTopicError(
                f"expected a list of topic ids, got {type(ids).__name__} {ids!r}"
                + (f" (in {where})" if where else ""),
                unknown=(ids,),
                where=where,
            )
        out: list[str] = []
        seen: set[str] = set()
        non_strings: list[object] = []
        unknown: list[str] = []
        for topic_id in ids:
            if not isinstance(topic_id, str):
                non_strings.append(topic_id)
            elif topic_id not in self._index:
                if topic_id not in unknown:
                    unknown.append(topic_id)
            elif topic_id not in seen:
                seen.add(topic_id)
                out.append(topic_id)
        if non_strings or unknown:
            raise self._error(unknown, where, non_strings=non_strings)
        return out

    def _error(
        self, unknown: Sequence[str], where: str, *, non_strings: Sequence[object] = ()
    ) -> UnknownTopicError:
        problems = []
        if non_strings:
            problems.append(
                "topic ids must be strings, got "
                + ", ".join(f"{type(b).__name__} {b!r}" for b in non_strings)
            )
        if unknown:
            named = []
            for b in unknown:
                close = difflib.get_close_matches(b.lower(), self._ids, n=1)
                named.append(f"{b!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            problems.append(f"unknown topic id{'s' if len(unknown) > 1 else ''} " + ", ".join(named))
        loc = f" in {where}" if where else ""
        return UnknownTopicError(
            f"{'; '.join(problems)}{loc}; known ids: {', '.join(self._ids)}",
            unknown=(*non_strings, *unknown),
            where=where,
        )

    def with_topic(self, topic: Topic) -> Taxonomy:
        """A new taxonomy with ``topic`` appended (the way a topic is added through data)."""
        return Taxonomy((*self._topics, topic))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form read by :meth:`from_dict`."""
        return {"version": TAXONOMY_VERSION, "topics": [asdict(t) for t in self._topics]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Taxonomy:
        """Build from the ``topics.json`` structure, raising ValueError that names the problem."""
        if not isinstance(d, Mapping):
            raise ValueError(f"taxonomy must be a JSON object, got {type(d).__name__}")
        extra = set(d) - {"version", "topics"}
        if extra:
            raise ValueError(f"taxonomy has unexpected keys: {', '.join(sorted(map(str, extra)))}")
        version = d.get("version")
        if version != TAXONOMY_VERSION or isinstance(version, bool):
            raise ValueError(f"unsupported taxonomy version {version!r} (expected {TAXONOMY_VERSION})")
        raw_topics = d.get("topics")
        if not isinstance(raw_topics, list) or not raw_topics:
            raise ValueError("taxonomy 'topics' must be a non-empty list")
        topics = []
        for i, t in enumerate(raw_topics):
            label = f"topic #{i + 1}" + (f" {t.get('id')!r}" if isinstance(t, Mapping) else "")
            if not isinstance(t, Mapping):
                raise ValueError(f"{label} must be an object, got {type(t).__name__}")
            missing = [k for k in _TOPIC_FIELDS if k not in t]
            if missing:
                raise ValueError(f"{label} is missing {', '.join(missing)}")
            extra = set(t) - set(_TOPIC_FIELDS)
            if extra:
                raise ValueError(f"{label} has unexpected keys: {', '.join(sorted(map(str, extra)))}")
            topics.append(Topic(**{k: t[k] for k in _TOPIC_FIELDS}))
        return cls(topics)

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        """Read and validate a ``topics.json`` file; errors name the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except ValueError as e:  # JSONDecodeError is a ValueError too
            raise ValueError(f"{path}: {e}") from e
        except OSError as e:  # missing, a folder, unreadable
            raise ValueError(f"{path}: cannot read the taxonomy ({e.strerror or e})") from e


def _check_topics(topics: tuple[Topic, ...]) -> None:
    if not topics:
        raise ValueError("a taxonomy needs at least one topic")
    seen: set[str] = set()
    for i, t in enumerate(topics):
        if not isinstance(t, Topic):
            raise ValueError(f"topic #{i + 1} must be a Topic, got {type(t).__name__}")
        for name in _TOPIC_FIELDS:
            value = getattr(t, name)
            if not isinstance(value, str):
                raise ValueError(
                    f"topic #{i + 1} {t.id!r}: {name!r} must be a string, got {type(value).__name__}"
                )
        if not _ID_RE.fullmatch(t.id):
            raise ValueError(f"topic #{i + 1}: invalid id {t.id!r} (must match [a-z][a-z0-9_]*)")
        if t.id in seen:
            raise ValueError(f"topic #{i + 1}: duplicate id {t.id!r}")
        seen.add(t.id)
        for name in ("ar", "en"):
            if not getattr(t, name).strip():
                raise ValueError(f"topic #{i + 1} {t.id!r}: {name!r} must not be empty")


@functools.cache
def default_taxonomy() -> Taxonomy:
    """The packaged taxonomy (tagger/data/topics.json), read once per process."""
    text = resources.files("tagger").joinpath("data", "topics.json").read_text(encoding="utf-8")
    return Taxonomy.from_dict(json.loads(text))
