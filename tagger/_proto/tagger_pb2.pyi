from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Document(_message.Message):
    __slots__ = ("id", "title", "text", "raw", "tags")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    text: str
    raw: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., raw: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class TagOptions(_message.Message):
    __slots__ = ("threshold", "top_k", "explain", "explain_n", "topics", "include_scores")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_N_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SCORES_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    top_k: int
    explain: bool
    explain_n: int
    topics: _containers.RepeatedScalarFieldContainer[str]
    include_scores: bool
    def __init__(self, threshold: _Optional[float] = ..., top_k: _Optional[int] = ..., explain: _Optional[bool] = ..., explain_n: _Optional[int] = ..., topics: _Optional[_Iterable[str]] = ..., include_scores: _Optional[bool] = ...) -> None: ...

class TagRequest(_message.Message):
    __slots__ = ("document", "options")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    document: Document
    options: TagOptions
    def __init__(self, document: _Optional[_Union[Document, _Mapping]] = ..., options: _Optional[_Union[TagOptions, _Mapping]] = ...) -> None: ...

class TagBatchRequest(_message.Message):
    __slots__ = ("documents", "options")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    options: TagOptions
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., options: _Optional[_Union[TagOptions, _Mapping]] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("ngram", "weight")
    NGRAM_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ngram: str
    weight: float
    def __init__(self, ngram: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class TopicScore(_message.Message):
    __slots__ = ("topic", "score", "evidence")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    score: float
    evidence: _containers.RepeatedCompositeFieldContainer[Evidence]
    def __init__(self, topic: _Optional[str] = ..., score: _Optional[float] = ..., evidence: _Optional[_Iterable[_Union[Evidence, _Mapping]]] = ...) -> None: ...

class TagResponse(_message.Message):
    __slots__ = ("id", "topics", "model_version", "scores", "dropped_tags", "dropped_parts", "truncated")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_TAGS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_PARTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    topics: _containers.RepeatedCompositeFieldContainer[TopicScore]
    model_version: str
    scores: _containers.RepeatedCompositeFieldContainer[TopicScore]
    dropped_tags: _containers.RepeatedScalarFieldContainer[str]
    dropped_parts: _containers.RepeatedScalarFieldContainer[str]
    truncated: bool
    def __init__(self, id: _Optional[str] = ..., topics: _Optional[_Iterable[_Union[TopicScore, _Mapping]]] = ..., model_version: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[TopicScore, _Mapping]]] = ..., dropped_tags: _Optional[_Iterable[str]] = ..., dropped_parts: _Optional[_Iterable[str]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class TagBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TagResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[TagResponse, _Mapping]]] = ...) -> None: ...

class ListTopicsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Topic(_message.Message):
    __slots__ = ("id", "ar", "en", "threshold")
    ID_FIELD_NUMBER: _ClassVar[int]
    AR_FIELD_NUMBER: _ClassVar[int]
    EN_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    id: str
    ar: str
    en: str
    threshold: float
    def __init__(self, id: _Optional[str] = ..., ar: _Optional[str] = ..., en: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

class ListTopicsResponse(_message.Message):
    __slots__ = ("topics", "model_version")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[Topic]
    model_version: str
    def __init__(self, topics: _Optional[_Iterable[_Union[Topic, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DataFile(_message.Message):
    __slots__ = ("role", "path", "sha256", "size_bytes")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    role: str
    path: str
    sha256: str
    size_bytes: int
    def __init__(self, role: _Optional[str] = ..., path: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ServerLimits(_message.Message):
    __slots__ = ("max_batch_documents", "max_chars", "truncates_long_text", "max_message_bytes")
    MAX_BATCH_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATES_LONG_TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_batch_documents: int
    max_chars: int
    truncates_long_text: bool
    max_message_bytes: int
    def __init__(self, max_batch_documents: _Optional[int] = ..., max_chars: _Optional[int] = ..., truncates_long_text: _Optional[bool] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "name", "created", "topics", "thresholds", "library_versions", "model_sha256", "data", "metrics", "manifest_json", "limits")
    class ThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LibraryVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    version: str
    name: str
    created: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    thresholds: _containers.ScalarMap[str, float]
    library_versions: _containers.ScalarMap[str, str]
    model_sha256: str
    data: _containers.RepeatedCompositeFieldContainer[DataFile]
    metrics: _containers.ScalarMap[str, float]
    manifest_json: str
    limits: ServerLimits
    def __init__(self, version: _Optional[str] = ..., name: _Optional[str] = ..., created: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., thresholds: _Optional[_Mapping[str, float]] = ..., library_versions: _Optional[_Mapping[str, str]] = ..., model_sha256: _Optional[str] = ..., data: _Optional[_Iterable[_Union[DataFile, _Mapping]]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., manifest_json: _Optional[str] = ..., limits: _Optional[_Union[ServerLimits, _Mapping]] = ...) -> None: ...
