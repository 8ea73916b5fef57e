"""The one predict path: Documents in, TagResults (or their JSON lines) out. Every face (CLI, gRPC, batch,
Spark) calls this."""
from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from tagger.artifacts import LoadedModel
from tagger.config import DEFAULT_MAX_CHARS
from tagger.document import Document
from tagger.features import Rows
from tagger.kernels import choose_topics
from tagger.model import Evidence
from tagger.taxonomy import UnknownTopicError

__all__ = ["Tagger", "TagOptions", "TagResult", "TopicScore", "InvalidDocumentError", "DEFAULT_MAX_CHARS"]

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
        """``to_json()`` as one line of JSON. Batch output renders the same line without a TagResult
        (:meth:`Tagger.tag_lines`); a test holds the two to the same text."""
        return json.dumps(self.to_json(), ensure_ascii=False)


_json_str = json.encoder.encode_basestring  # the C string encoder json.dumps(ensure_ascii=False) uses

#: ``repr(round(score, 4))`` for every score in [0, 1], by ten-thousandths: a rounded score
#: ``k / 10_000`` is the double nearest that decimal, which is what ``round`` returns.
_SCORE_TEXT: Final = tuple(repr(k / 10_000) for k in range(10_001))


def _score_units(scores: np.ndarray) -> list[list[int]] | None:
    """``round(s, 4) * 10_000`` for each score as ints, exactly as Python's ``round`` (correctly
    rounded, ties to even) but for a whole chunk at once; None if a score is not in [0, 1].

    ``rint(s * 1e4)`` rounds the product, not the exact value. The two differ only when the product
    lands within its rounding error (< 1e-12) of a half, so those few scores go through ``round``.
    """
    if not (np.all(scores >= 0.0) and np.all(scores <= 1.0)) or np.signbit(scores).any():  # NaN and -0.0 too
        return None
    scaled = scores * 10_000.0
    units = np.rint(scaled)
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-9
    for i, j in zip(*np.nonzero(near_half)):
        units[i, j] = round(round(float(scores[i, j]), 4) * 10_000)
    return units.astype(np.int64).tolist()


@dataclass(frozen=True)
class _Scored:
    """Up to _CHUNK_DOCS documents through the predict path: their rows, scores and chosen topics
    (best first). Both renderings, TagResults and JSON lines, are made from this one outcome."""

    docs: Sequence[Document]
    truncated: Sequence[bool]
    rows: Rows
    scores: np.ndarray
    chosen: list[list[int]]


@dataclass
class Tagger:
    """Wraps a verified model; stateless per call, so one instance serves many threads."""

    loaded: LoadedModel
    max_chars: int = DEFAULT_MAX_CHARS
    on_too_long: str = "truncate"  # or "reject"
    _index: dict[str, int] = field(init=False, repr=False)
    _all_allowed: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.on_too_long not in ("truncate", "reject"):
            raise ValueError(f"on_too_long must be 'truncate' or 'reject', got {self.on_too_long!r}")
        if self.max_chars < 1:
            raise ValueError("max_chars must be >= 1")
        model = self.loaded.model
        self._index = {t: i for i, t in enumerate(model.topics)}
        # _choose's mask when options do not restrict topics, made once (a one-document request paid
        # for building it on every call); never written.
        self._all_allowed = np.ones(len(model.topics), dtype=np.bool_)

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
        if len(docs) == 1:
            return [self._tag_one(docs[0], options)]
        return [r for scored in self._score(docs, options) for r in self._results(scored, options)]

    def tag_lines(self, docs: Sequence[Document], options: TagOptions = TagOptions()) -> list[str]:
        """``[r.to_json_line() for r in tag_many(docs, options)]``, rendered straight from each chunk's
        score arrays: batch output writes one line per document, and building a TagResult and then
        its dict per document cost a quarter of the batch's time."""
        lines: list[str] = []
        for scored in self._score(docs, options):
            units = None if options.explain else _score_units(scored.scores)
            if units is None:  # evidence to render, or a score no line format expects: the generic way
                lines.extend(r.to_json_line() for r in self._results(scored, options))
            else:
                lines.extend(self._lines(scored, units))
        return lines

    # ---------------------------------------------------------------------------------- internals
    def _score(self, docs: Sequence[Document], options: TagOptions) -> Iterator[_Scored]:
        """The predict path: check every document first (so a bad one fails the call before any
        output), then featurise, score and choose topics chunk by chunk."""
        model = self.loaded.model
        options.validate(model.topics)
        prepared = [self.check(d) for d in docs]
        for start in range(0, len(docs), _CHUNK_DOCS):
            part = prepared[start:start + _CHUNK_DOCS]
            rows = model.featurizer.rows_documents([(title, body) for title, body, _ in part])
            scores = model.scores_rows(rows)
            yield _Scored(docs[start:start + _CHUNK_DOCS], [t for _, _, t in part], rows, scores,
                          self._choose(scores, options))

    def _tag_one(self, doc: Document, options: TagOptions) -> TagResult:
        """``tag_many([doc], options)[0]`` by the same steps minus the chunk loop: a server's
        single-document call paid more for that machinery than for the tagging (tests hold both ways
        to the same results on the dev set)."""
        model = self.loaded.model
        options.validate(model.topics)
        title, body, truncated = self.check(doc)
        rows = model.featurizer.rows_documents(((title, body),))
        scores = model.scores_rows(rows)
        return self._results(_Scored((doc,), (truncated,), rows, scores, self._choose(scores, options)), options)[0]

    def _choose(self, scores: np.ndarray, options: TagOptions) -> list[list[int]]:
        """Each document's chosen topic indices, best first (ties to the lower index): at or over the
        threshold, among ``options.topics`` if given, the best ``options.top_k`` if given; with none,
        the best if the model's ``empty_fallback`` rule admits it."""
        model = self.loaded.model
        thresholds = (
            np.full(len(model.topics), float(options.threshold)) if options.threshold is not None
            else np.ascontiguousarray(model.thresholds, np.float64)  # the model's own array: no copy
        )
        allowed = self._all_allowed
        if options.topics:
            allowed = np.zeros(len(model.topics), dtype=np.bool_)
            allowed[[self._index[t] for t in options.topics]] = True
        # A caller's own flat threshold asks for plain thresholding: the model's fallback is its own rule.
        fallback = model.empty_fallback if options.threshold is None and model.empty_fallback else 0.0
        flat, ends = choose_topics(scores, thresholds, allowed, -1 if options.top_k is None else options.top_k,
                                   fallback)
        flat, ends = flat.tolist(), ends.tolist()
        if len(ends) == 1:
            return [flat]
        return [flat[a:b] for a, b in zip([0, *ends], ends)]

    def _results(self, scored: _Scored, options: TagOptions) -> list[TagResult]:
        model = self.loaded.model
        topics, version = model.topics, self.version
        results = []
        for i, (doc, truncated, s, chosen) in enumerate(
            zip(scored.docs, scored.truncated, scored.scores.tolist(), scored.chosen)
        ):
            evidence = (
                {j: tuple(model.explain_row(*scored.rows.row(i), topics[j], options.explain_n)) for j in chosen}
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

    def _lines(self, scored: _Scored, units: list[list[int]]) -> list[str]:
        """TagResult.to_json_line's text for each document, without the TagResult (see tag_lines)."""
        topics = [_json_str(t) for t in self.loaded.model.topics]
        topic_open = [f'{{"topic": {t}, "score": ' for t in topics]
        scores_format = ", ".join(t.replace("%", "%%") + ": %s" for t in topics)
        tail = f'"model_version": {_json_str(self.version)}'
        tail_truncated = tail + ', "truncated": true'
        text = _SCORE_TEXT
        lines = []
        for doc, truncated, u, chosen in zip(scored.docs, scored.truncated, units, scored.chosen):
            chosen_json = ", ".join([topic_open[j] + text[u[j]] + "}" for j in chosen])
            scores_json = scores_format % tuple([text[x] for x in u])
            tags = ", ".join(map(_json_str, doc.tags))
            lines.append(
                f'{{"id": {_json_str(doc.id)}, "topics": [{chosen_json}], "scores": {{{scores_json}}}, '
                f'"dropped_tags": [{tags}], {tail_truncated if truncated else tail}}}'
            )
        return lines
