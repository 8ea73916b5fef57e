"""The one predict path: Documents in, TagResults out. Every face (CLI, gRPC, batch, Spark) calls this."""
from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from tagger.artifacts import LoadedModel
from tagger.document import Document
from tagger.features import Rows
from tagger.model import Evidence
from tagger.taxonomy import UnknownTopicError

__all__ = ["Tagger", "TagOptions", "TagResult", "TopicScore", "InvalidDocumentError", "DEFAULT_MAX_CHARS"]

#: Longest text scored as is; longer text is truncated (flagged) or rejected, by ``on_too_long``.
DEFAULT_MAX_CHARS = 100_000
#: Documents featurised and scored together by ``tag_many``: large enough to amortise the per-call
#: work, small enough to bound its memory (~30 KB per typical article, ~2 MB at DEFAULT_MAX_CHARS).
_CHUNK_DOCS = 512


class InvalidDocumentError(ValueError):
    """A document cannot be tagged (empty, too long under the reject policy); the message says why."""


@dataclass(frozen=True)
class TagOptions:
    """Per-request choices. ``threshold`` overrides every topic's tuned threshold; ``topics``
    restricts the answer to those topics; ``top_k`` keeps the best k chosen topics."""

    threshold: float | None = None
    top_k: int | None = None
    explain: bool = False
    explain_n: int = 5
    topics: tuple[str, ...] = ()

    def validate(self, known: Sequence[str]) -> None:
        if self.threshold is not None and not (
            isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0 and not math.isnan(self.threshold)
        ):
            raise ValueError(f"threshold must be a number in [0, 1], got {self.threshold!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be a non-negative int, got {self.top_k!r}")
        if not isinstance(self.explain_n, int) or not 1 <= self.explain_n <= 100:
            raise ValueError(f"explain_n must be an int in [1, 100], got {self.explain_n!r}")
        unknown = [t for t in self.topics if t not in known]
        if unknown:
            raise UnknownTopicError(
                f"unknown topic(s) {unknown} in options; this model knows {list(known)}", unknown=tuple(unknown),
                where="options",
            )


@dataclass(frozen=True)
class TopicScore:
    topic: str
    score: float
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class TagResult:
    """Chosen topics (best first), every topic's score, and what was removed from the input."""

    id: str
    topics: tuple[TopicScore, ...]
    scores: dict[str, float]
    dropped_tags: tuple[str, ...]
    dropped_parts: tuple[str, ...]
    model_version: str
    truncated: bool = False

    def to_json(self) -> dict:
        out: dict = {
            "id": self.id,
            "topics": [
                {"topic": t.topic, "score": round(t.score, 4)}
                | ({"evidence": [{"ngram": e.ngram, "weight": round(e.weight, 4)} for e in t.evidence]} if t.evidence else {})
                for t in self.topics
            ],
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "dropped_tags": list(self.dropped_tags),
            "model_version": self.model_version,
        }
        if self.truncated:
            out["truncated"] = True
        return out

    def to_json_line(self) -> str:
        """``json.dumps(self.to_json(), ensure_ascii=False)``, built directly: batch output writes one
        per document, and the generic encoder walking a fresh dict was a sixth of the batch's time."""
        values = tuple(map(float, self.scores.values()))
        if any(t.evidence for t in self.topics) or not all(map(math.isfinite, values)):
            return json.dumps(self.to_json(), ensure_ascii=False)
        topics = ", ".join(
            [f'{{"topic": {_json_str(t.topic)}, "score": {round(float(t.score), 4)!r}}}' for t in self.topics]
        )
        scores = _scores_format(tuple(self.scores)) % tuple(map(round, values, repeat(4)))
        tags = ", ".join(map(_json_str, self.dropped_tags))
        truncated = ', "truncated": true' if self.truncated else ""
        return (
            f'{{"id": {_json_str(self.id)}, "topics": [{topics}], "scores": {{{scores}}}, "dropped_tags": [{tags}], '
            f'"model_version": {_json_str(self.model_version)}{truncated}}}'
        )


@functools.lru_cache(maxsize=16)
def _scores_format(topics: tuple[str, ...]) -> str:
    """'"diplomacy": %r, "military": %r, …' for one model's topics."""
    return ", ".join(_json_str(t).replace("%", "%%") + ": %r" for t in topics)


_json_str = json.encoder.encode_basestring  # the C string encoder json.dumps(ensure_ascii=False) uses


@dataclass
class Tagger:
    """Wraps a verified model; stateless per call, so one instance serves many threads."""

    loaded: LoadedModel
    max_chars: int = DEFAULT_MAX_CHARS
    on_too_long: str = "truncate"  # or "reject"
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.on_too_long not in ("truncate", "reject"):
            raise ValueError(f"on_too_long must be 'truncate' or 'reject', got {self.on_too_long!r}")
        if self.max_chars < 1:
            raise ValueError("max_chars must be >= 1")
        self._index = {t: i for i, t in enumerate(self.loaded.model.topics)}

    @property
    def topics(self) -> tuple[str, ...]:
        return self.loaded.model.topics

    @property
    def version(self) -> str:
        return self.loaded.version

    def check(self, doc: Document) -> tuple[str, str, bool]:
        """The (title, body) the model scores and whether they were truncated; raises InvalidDocumentError."""
        n = len(doc.title) + len(doc.body)
        if not (doc.title.strip() or doc.body.strip()):
            raise InvalidDocumentError(f"document {doc.id!r} has no text to tag (empty title and body)")
        if n > self.max_chars:
            if self.on_too_long == "reject":
                raise InvalidDocumentError(f"document {doc.id!r} has {n} characters, over the limit of {self.max_chars}")
            title = doc.title[: self.max_chars]
            return title, doc.body[: self.max_chars - len(title)], True
        return doc.title, doc.body, False

    def tag(self, doc: Document, options: TagOptions = TagOptions()) -> TagResult:
        return self.tag_many([doc], options)[0]

    def tag_many(self, docs: Sequence[Document], options: TagOptions = TagOptions()) -> list[TagResult]:
        """Tag documents in order. Raises InvalidDocumentError naming the first bad document.

        Documents are featurised and scored together, a few hundred at a time (one compiled pass
        each; memory stays bounded however many are passed). A document's scores do not depend on
        its neighbours, so results are the same one by one or all at once.
        """
        model = self.loaded.model
        options.validate(model.topics)
        prepared = [self.check(d) for d in docs]
        results: list[TagResult] = []
        for start in range(0, len(docs), _CHUNK_DOCS):
            part = prepared[start:start + _CHUNK_DOCS]
            rows = model.featurizer.rows_documents([(title, body) for title, body, _ in part])
            results.extend(self._results(docs[start:start + _CHUNK_DOCS], part, rows, model.scores_rows(rows), options))
        return results

    def _results(self, docs: Sequence[Document], prepared: Sequence[tuple[str, str, bool]], rows: Rows,
                 scores: np.ndarray, options: TagOptions) -> list[TagResult]:
        model = self.loaded.model
        thresholds = (
            np.full(len(model.topics), float(options.threshold)) if options.threshold is not None else model.thresholds
        )
        allowed = [self._index[t] for t in options.topics] if options.topics else range(len(model.topics))
        passed = (scores >= thresholds).tolist()
        topics, version = model.topics, self.version
        results = []
        for i, (doc, (_, _, truncated), s, ok) in enumerate(zip(docs, prepared, scores.tolist(), passed)):
            chosen = sorted((j for j in allowed if ok[j]), key=lambda j: (-s[j], j))
            if options.top_k is not None:
                chosen = chosen[: options.top_k]
            evidence = (
                {j: tuple(model.explain_row(*rows.row(i), topics[j], options.explain_n)) for j in chosen}
                if options.explain else {}
            )
            results.append(
                TagResult(
                    id=doc.id, topics=tuple(TopicScore(topics[j], s[j], evidence.get(j, ())) for j in chosen),
                    scores=dict(zip(topics, s)), dropped_tags=doc.tags, dropped_parts=doc.dropped,
                    model_version=version, truncated=truncated,
                )
            )
        return results
