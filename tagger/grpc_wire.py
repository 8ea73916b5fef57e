"""Conversions between the gRPC messages (``tagger.v1``) and the core types, for server and client.

The server turns messages into :class:`~tagger.document.Document` / :class:`~tagger.tagger.TagOptions`,
calls :meth:`Tagger.tag_many` and turns :class:`~tagger.tagger.TagResult` back into messages; the
client does the reverse. Keeping both directions here keeps the two faces in agreement.

Invalid UTF-8: protobuf rejects a ``string`` field holding invalid UTF-8 while parsing, before any
handler runs, and gRPC would answer INTERNAL with no hint. :func:`safe_deserializer` instead
returns a :class:`BadRequest` naming the field (``documents[2].text``), found by re-parsing the
bytes with a twin of the message whose ``string`` fields are ``bytes``; the server answers it with
INVALID_ARGUMENT.
"""
from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from tagger._proto import tagger_pb2 as pb
from tagger.artifacts import LoadedModel
from tagger.document import Document, from_fields
from tagger.model import Evidence
from tagger.tagger import TagOptions, TagResult, TopicScore

__all__ = [
    "BadRequest",
    "document_from_pb",
    "document_to_pb",
    "find_invalid_utf8",
    "model_info_pb",
    "options_from_pb",
    "options_to_pb",
    "result_from_pb",
    "result_to_pb",
    "safe_deserializer",
    "topics_pb",
]

DEFAULT_EXPLAIN_N = TagOptions().explain_n


# ------------------------------------------------------------------ requests: server side
class BadRequest:
    """Stands in for a request message that could not be parsed; ``message`` says why."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


@functools.cache
def _bytes_twin(full_name: str) -> type[Message]:
    """The message class ``full_name`` with every string field turned into bytes (own descriptor pool)."""
    file_proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(file_proto)

    def to_bytes(messages: Any) -> None:
        for m in messages:
            if m.options.map_entry:  # map keys cannot be bytes; requests have no maps anyway
                continue
            for f in m.field:
                if f.type == FieldDescriptor.TYPE_STRING:
                    f.type = FieldDescriptor.TYPE_BYTES
            to_bytes(m.nested_type)

    to_bytes(file_proto.message_type)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def _walk_bytes(msg: Message, prefix: str) -> Iterator[tuple[str, bytes]]:
    for f, value in msg.ListFields():
        name = f"{prefix}{f.name}"
        if f.type == FieldDescriptor.TYPE_BYTES:
            if f.is_repeated:
                for i, v in enumerate(value):
                    yield f"{name}[{i}]", v
            else:
                yield name, value
        elif f.type == FieldDescriptor.TYPE_MESSAGE and not f.message_type.GetOptions().map_entry:
            if f.is_repeated:
                for i, v in enumerate(value):
                    yield from _walk_bytes(v, f"{name}[{i}].")
            else:
                yield from _walk_bytes(value, f"{name}.")


def find_invalid_utf8(message_cls: type[Message], data: bytes) -> str | None:
    """Where in serialized ``data`` a string field holds invalid UTF-8, e.g. "documents[2].text at byte 7"."""
    try:
        twin = _bytes_twin(message_cls.DESCRIPTOR.full_name).FromString(data)
    except DecodeError:
        return None
    for path, value in _walk_bytes(twin, ""):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as e:
            return f"{path} at byte {e.start}"
    return None


def safe_deserializer(message_cls: type[Message]) -> Callable[[bytes], Message | BadRequest]:
    """A request deserializer that returns BadRequest instead of raising (which gRPC reports as INTERNAL)."""
    parse = message_cls.FromString
    name = message_cls.DESCRIPTOR.name

    def deserialize(data: bytes) -> Message | BadRequest:
        try:
            return parse(data)
        except DecodeError as e:
            where = find_invalid_utf8(message_cls, data)
            if where:
                return BadRequest(f"{where} is not valid UTF-8; string fields must be UTF-8 text")
            return BadRequest(f"cannot parse the {name} message: {e}")

    return deserialize


def document_from_pb(d: pb.Document) -> Document:
    """The core Document for a message (page parsing and cleaning happen in from_fields)."""
    return from_fields(id=d.id, title=d.title, text=d.text, raw=d.raw, tags=list(d.tags))


def options_from_pb(o: pb.TagOptions) -> tuple[TagOptions, bool]:
    """TagOptions (validated later against the serving model) and the include_scores flag."""
    return TagOptions(
        threshold=o.threshold if o.HasField("threshold") else None,
        top_k=o.top_k if o.HasField("top_k") else None,
        explain=o.explain,
        explain_n=o.explain_n or DEFAULT_EXPLAIN_N,
        topics=tuple(o.topics),
    ), o.include_scores


def result_to_pb(r: TagResult, include_scores: bool = False) -> pb.TagResponse:
    resp = pb.TagResponse(
        id=r.id,
        topics=[
            pb.TopicScore(topic=t.topic, score=t.score,
                          evidence=[pb.Evidence(ngram=e.ngram, weight=e.weight) for e in t.evidence])
            for t in r.topics
        ],
        model_version=r.model_version,
        dropped_tags=r.dropped_tags,
        dropped_parts=r.dropped_parts,
        truncated=r.truncated,
    )
    if include_scores:
        resp.scores.extend(pb.TopicScore(topic=t, score=s) for t, s in r.scores.items())
    return resp


def topics_pb(loaded: LoadedModel) -> pb.ListTopicsResponse:
    """The model's topics in its order, named from the taxonomy it was trained with (a topic added by
    a retrain carries its names in the manifest; one the taxonomy lacks gets empty names)."""
    taxonomy = loaded.taxonomy
    out = pb.ListTopicsResponse(model_version=loaded.version)
    for topic, threshold in zip(loaded.model.topics, loaded.model.thresholds):
        named = taxonomy.get(topic) if topic in taxonomy else None
        out.topics.add(id=topic, ar=named.ar if named else "", en=named.en if named else "", threshold=float(threshold))
    return out


def _numbers(obj: Any, prefix: str) -> Iterator[tuple[str, float]]:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        if math.isfinite(obj):
            yield prefix, float(obj)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}.{k}" if prefix else str(k))


def _data_files(obj: Any, role: str) -> Iterator[pb.DataFile]:
    """Every {path, sha256} record in the manifest, tagged with where it was found."""
    if isinstance(obj, Mapping):
        if isinstance(obj.get("sha256"), str) and "path" in obj:
            yield pb.DataFile(role=role, path=str(obj["path"]), sha256=obj["sha256"],
                              size_bytes=int(obj.get("size_bytes") or 0))
            return
        for k, v in obj.items():
            yield from _data_files(v, f"{role}.{k}" if role else str(k))
    elif isinstance(obj, list):
        for v in obj:
            yield from _data_files(v, role)


def model_info_pb(loaded: LoadedModel, limits: pb.ServerLimits) -> pb.ModelInfo:
    m = loaded.manifest
    return pb.ModelInfo(
        version=loaded.version,
        name=str(m["name"]),
        created=str(m.get("created", "")),
        topics=list(loaded.model.topics),
        thresholds={t: float(v) for t, v in zip(loaded.model.topics, loaded.model.thresholds)},
        library_versions={str(k): str(v) for k, v in m.get("versions", {}).items()},
        model_sha256=str(m["sha256"]),
        data=[*_data_files(m.get("training_data", {}), "training_data"), *_data_files(m.get("metrics", {}), "metrics")],
        metrics=dict(_numbers(m.get("metrics", {}), "")),
        manifest_json=json.dumps(m, ensure_ascii=False, sort_keys=True),
        limits=limits,
    )


# ------------------------------------------------------------------ client side
DocumentLike = Document | pb.Document | Mapping[str, Any] | str


def document_to_pb(doc: DocumentLike) -> pb.Document:
    """A message for a core Document, a field mapping (id/title/text/raw/tags) or a raw page string."""
    if isinstance(doc, pb.Document):
        return doc
    if isinstance(doc, str):
        return pb.Document(raw=doc)
    if isinstance(doc, Document):  # already parsed: send the cleaned parts
        return pb.Document(id=doc.id, title=doc.title, text=doc.body, tags=doc.tags)
    if isinstance(doc, Mapping):
        unknown = set(doc) - {"id", "title", "text", "raw", "tags"}
        if unknown:
            raise ValueError(f"unknown document field(s) {sorted(unknown)}; expected id, title, text, raw, tags")
        return pb.Document(**{k: v for k, v in doc.items() if v is not None})
    raise TypeError(f"cannot send {type(doc).__name__} as a document")


def options_to_pb(options: TagOptions | None, include_scores: bool = False) -> pb.TagOptions:
    o = options or TagOptions()
    msg = pb.TagOptions(explain=o.explain, topics=o.topics, include_scores=include_scores,
                        explain_n=0 if o.explain_n == DEFAULT_EXPLAIN_N else o.explain_n)
    if o.threshold is not None:
        msg.threshold = o.threshold
    if o.top_k is not None:
        msg.top_k = o.top_k
    return msg


def result_from_pb(r: pb.TagResponse) -> TagResult:
    """The core TagResult for a response (``scores`` is empty unless include_scores was asked)."""
    return TagResult(
        id=r.id,
        topics=tuple(
            TopicScore(t.topic, t.score, tuple(Evidence(e.ngram, e.weight) for e in t.evidence)) for t in r.topics
        ),
        scores={s.topic: s.score for s in r.scores},
        dropped_tags=tuple(r.dropped_tags),
        dropped_parts=tuple(r.dropped_parts),
        model_version=r.model_version,
        truncated=r.truncated,
    )
