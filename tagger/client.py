"""A small client for the tagger gRPC service, for other Python services and ``tagger tag --server``.

    with TaggerClient("localhost:50051") as client:
        result = client.tag({"raw": page})                    # -> tagger.tagger.TagResult
        results = client.tag_batch(docs, TagOptions(top_k=3))  # any length; split by the server's limit
        for result in client.tag_stream(doc_iterator): ...

Every call has a deadline (``timeout`` seconds, covering its retries). UNAVAILABLE (server
restarting, a worker or the whole server shutting down, connection refused) is retried with
exponential backoff until that deadline (or ``retries`` times, if given): every tagger RPC is
idempotent. So is CANCELLED, which this client never causes itself: a shutting-down gRPC server
cancels the calls it had received but not yet started (grpc/grpc#41785) instead of answering
UNAVAILABLE, and the server cancels a stream left idle past its ``--stream-idle-timeout``. So is
RESOURCE_EXHAUSTED when the server marks it "busy" (trailing metadata ``tagger-retry-after-ms``: it shed
load), after at least that pause; a message over the size limit is not retried.
``tag_stream`` also survives a server shutting down mid-stream: it resends the documents that were
sent but not yet answered, so each document is answered exactly once and in order. Other errors
raise :class:`grpc.RpcError` (``.code()``, ``.details()``).

``connections > 1`` opens several HTTP/2 connections and spreads calls over them: a multi-worker
server balances *connections* across its processes (SO_REUSEPORT), so one connection uses one worker.

Security: ``tls_ca`` (PEM file of the CA that signed the server's certificate; ``tls=True`` alone uses
the system's roots) turns on TLS; ``tls_cert`` + ``tls_key`` add a client certificate (mutual TLS);
``token`` is sent as ``authorization: Bearer TOKEN`` on every call.

Balancing over several servers: ``load_balancing="round_robin"`` with a target that resolves to several
addresses, e.g. ``dns:///tagger-headless.ns.svc.cluster.local:50051`` (a Kubernetes headless Service),
spreads *calls* over every address (gRPC's round_robin policy) instead of pinning each connection
to one; DNS is re-resolved when a connection goes away (the server's ``--max-connection-age``).
"""
from __future__ import annotations

import functools
import itertools
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tagger._proto import tagger_pb2 as pb
from tagger._proto import tagger_pb2_grpc as pb_grpc
from tagger.document import Document
from tagger.grpc_wire import DocumentLike, document_to_pb, options_to_pb, result_from_pb
from tagger.tagger import InvalidDocumentError, TagOptions, TagResult

__all__ = ["DocumentLike", "RemoteTagger", "TaggerClient"]

T = TypeVar("T")
# Codes that mean "not handled, try again" (see the module docstring for CANCELLED).
RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
# A RESOURCE_EXHAUSTED carrying this trailing metadata means "busy, retry after N ms" (the server shed
# load); without it (a message over the size limit) retrying cannot help.
RETRY_AFTER_KEY = "tagger-retry-after-ms"


def _retry_after(error: grpc.RpcError) -> float | None:
    """Seconds to wait before retrying ``error``, or None if it is not worth retrying."""
    code = error.code()
    if code in RETRY_CODES:
        return 0.0
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailing = getattr(error, "trailing_metadata", lambda: None)() or ()
        for key, value in trailing:
            if key == RETRY_AFTER_KEY:
                try:
                    return max(0.0, float(value) / 1000)
                except ValueError:
                    return None
    return None
_END = object()


class TaggerClient:
    """Thread-safe client; ``target`` is "host:port". Close it (or use ``with``) to free its connections."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30.0,
        retries: int | None = None,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        max_message_mb: float = 64.0,
        connections: int = 1,
        options: Sequence[tuple[str, Any]] = (),
        tls: bool = False,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        token: str | None = None,
        load_balancing: str | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together (a client certificate and its key)")
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ValueError("token must be non-empty and hold no spaces")
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        size = int(max_message_mb * 1024 * 1024)
        channel_options = [
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", size),
            # Own connection per channel: gRPC would otherwise share one between identical channels.
            ("grpc.use_local_subchannel_pool", 1),
            *options,
        ]
        if load_balancing is not None:
            channel_options.append(
                ("grpc.service_config", json.dumps({"loadBalancingConfig": [{load_balancing: {}}]})))
        self._metadata: tuple[tuple[str, str], ...] | None = (
            (("authorization", f"Bearer {token}"),) if token is not None else None)
        if tls or tls_ca is not None or tls_cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes() if tls_ca is not None else None,
                private_key=Path(tls_key).read_bytes() if tls_key is not None else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert is not None else None)
            self._channels = [grpc.secure_channel(target, credentials, options=channel_options)
                              for _ in range(max(1, connections))]
        else:
            self._channels = [grpc.insecure_channel(target, options=channel_options)
                              for _ in range(max(1, connections))]
        self._stubs = [pb_grpc.TopicTaggerStub(c) for c in self._channels]
        self._next = itertools.cycle(range(len(self._stubs)))
        self._lock = threading.Lock()
        self._limits: pb.ServerLimits | None = None

    # ---------------------------------------------------------------- plumbing
    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> TaggerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_connection(self, timeout: float = 5.0) -> None:
        """Connect now, or raise ConnectionError: at once when the connection fails (nothing listening,
        a TLS mismatch), after ``timeout`` seconds when nothing answers at all."""
        channel = self._channels[0]
        outcome: list[grpc.ChannelConnectivity] = []
        settled = threading.Event()
        final = (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                 grpc.ChannelConnectivity.SHUTDOWN)

        def watch(state: grpc.ChannelConnectivity) -> None:
            if state in final and not settled.is_set():
                outcome.append(state)
                settled.set()

        channel.subscribe(watch, try_to_connect=True)
        try:
            answered = settled.wait(timeout)
        finally:
            channel.unsubscribe(watch)
        if not answered:
            raise ConnectionError(f"cannot connect to {self.target}: no answer within {timeout:g}s")
        if outcome[0] is not grpc.ChannelConnectivity.READY:
            raise ConnectionError(f"cannot connect to {self.target}: the connection failed (is a server "
                                  "listening there, with the same TLS setting?)")

    def _stub(self) -> pb_grpc.TopicTaggerStub:
        with self._lock:
            return self._stubs[next(self._next)]

    def _sleep_before_retry(self, attempt: int, deadline: float, at_least: float = 0.0) -> bool:
        """Back off before retry ``attempt`` (1-based); False if retries (when counted) or time are used up.

        By default only the deadline limits retries: a server restart takes seconds (the model loads
        and warms), and a fixed count of quick retries would give up before it is back.
        """
        if self.retries is not None and attempt > self.retries:
            return False
        pause = max(at_least, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
        if time.monotonic() + pause >= deadline:
            return False
        time.sleep(pause)
        return True

    def _call(self, call: Callable[[pb_grpc.TopicTaggerStub, float], T], timeout: float | None) -> T:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for attempt in itertools.count(1):
            try:
                return call(self._stub(), max(0.0, deadline - time.monotonic()))
            except grpc.RpcError as e:
                wait = _retry_after(e)
                if wait is None or not self._sleep_before_retry(attempt, deadline, wait):
                    raise
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- RPCs
    def tag(self, document: DocumentLike, options: TagOptions | None = None, *, include_scores: bool = False,
            timeout: float | None = None) -> TagResult:
        """Tag one document: a mapping (id/title/text/raw/tags), a raw page str, a Document or a pb.Document."""
        request = pb.TagRequest(document=document_to_pb(document), options=options_to_pb(options, include_scores))
        return result_from_pb(self._call(lambda stub, t: stub.Tag(request, timeout=t, metadata=self._metadata), timeout))

    def tag_batch(self, documents: Iterable[DocumentLike], options: TagOptions | None = None, *,
                  include_scores: bool = False, batch_size: int | None = None,
                  timeout: float | None = None) -> list[TagResult]:
        """Tag documents in order, in as many TagBatch calls as the server's limits need (documents
        per batch, or ``batch_size``; half the message size limit). ``timeout`` applies to each call."""
        docs = [document_to_pb(d) for d in documents]
        if not docs:
            return []
        limits = self.limits()
        max_docs = batch_size or limits.max_batch_documents or 1000
        max_bytes = (limits.max_message_bytes or 4 << 20) // 2  # the response (evidence, scores) needs room too
        opts = options_to_pb(options, include_scores)
        out: list[TagResult] = []

        def send(chunk: list[pb.Document]) -> None:
            request = pb.TagBatchRequest(documents=chunk, options=opts)
            response = self._call(lambda stub, t: stub.TagBatch(request, timeout=t, metadata=self._metadata), timeout)
            out.extend(result_from_pb(r) for r in response.results)

        chunk: list[pb.Document] = []
        size = 0
        for doc in docs:
            n = doc.ByteSize()
            if chunk and (len(chunk) >= max_docs or size + n > max_bytes):
                send(chunk)
                chunk, size = [], 0
            chunk.append(doc)
            size += n
        send(chunk)
        return out

    def tag_stream(self, documents: Iterable[DocumentLike], options: TagOptions | None = None, *,
                   include_scores: bool = False, timeout: float | None = None) -> Iterator[TagResult]:
        """Tag a (possibly endless) iterable over one TagStream, yielding results in order as they come.

        ``timeout`` (default: none) bounds the whole stream. On UNAVAILABLE or CANCELLED the stream
        is reopened and the documents sent but not answered are sent again first; each outage may last
        up to the client's ``timeout`` (or the stream's, if sooner).
        """
        feed = _StreamFeed(documents, options_to_pb(options, include_scores))
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        attempt, outage_deadline = 0, deadline
        while True:
            remaining = None if deadline == float("inf") else max(0.0, deadline - time.monotonic())
            error: grpc.RpcError | None = None
            try:
                for response in self._stub().TagStream(feed.attempt(), timeout=remaining, metadata=self._metadata):
                    feed.answered()
                    attempt = 0
                    yield result_from_pb(response)
                if feed.failure is not None:
                    raise feed.failure
                if not feed.pending:
                    return
                # The server ended the stream with documents unanswered: send them again.
            except grpc.RpcError as e:
                if _retry_after(e) is None:
                    raise
                error = e
            attempt += 1
            if attempt == 1:  # a new outage: without a stream timeout, wait for the server up to `timeout`
                outage_deadline = min(deadline, time.monotonic() + self.timeout)
            if not self._sleep_before_retry(attempt, outage_deadline):
                if error is not None:
                    raise error
                raise RuntimeError(f"TagStream ended with {len(feed.pending)} documents unanswered")

    def list_topics(self, *, timeout: float | None = None) -> pb.ListTopicsResponse:
        return self._call(lambda stub, t: stub.ListTopics(pb.ListTopicsRequest(), timeout=t, metadata=self._metadata), timeout)

    def model_info(self, *, timeout: float | None = None) -> pb.ModelInfo:
        return self._call(lambda stub, t: stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=t, metadata=self._metadata), timeout)

    def limits(self) -> pb.ServerLimits:
        """What the server accepts (asked once): documents per batch, characters, message size."""
        if self._limits is None:
            self._limits = self.model_info().limits
        return self._limits

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The health status name ("SERVING", "NOT_SERVING", ...) of the server or one service."""
        stub = health_pb2_grpc.HealthStub(self._channels[0])
        response = self._call(lambda _, t: stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=t, metadata=self._metadata),
                              timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Block until the server reports SERVING; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.health(timeout=max(0.1, deadline - time.monotonic())) == "SERVING":
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.target} not SERVING after {timeout:.0f}s")
            time.sleep(0.05)


class _StreamFeed:
    """Request iterators for successive TagStream attempts over one document iterable, such that a
    reconnect neither loses nor repeats a document.

    gRPC pulls each attempt's iterator in its own thread. ``pending`` holds the requests sent and
    not yet answered, in order; a new attempt sends them again first. Only the newest attempt may
    take documents: an older one that was blocked in the source when the stream broke hands the
    document it took over to the next attempt (``_ahead``). The source may block for as long as it
    likes; the caller's thread never waits for it.
    """

    def __init__(self, documents: Iterable[DocumentLike], options: pb.TagOptions) -> None:
        self._source = iter(documents)
        self._options = options
        self.pending: deque[pb.TagRequest] = deque()
        self._ahead: deque[pb.TagRequest] = deque()
        self._state = threading.Lock()  # generation, pending, _ahead, exhausted
        self._pull = threading.Lock()  # one reader in the source at a time
        self._generation = 0
        self.exhausted = False
        self.failure: BaseException | None = None  # raised by the source; re-raised to the caller

    def attempt(self) -> Iterator[pb.TagRequest]:
        with self._state:
            self._generation += 1
            return self._requests(self._generation, list(self.pending))

    def answered(self) -> None:
        with self._state:
            self.pending.popleft()

    def _requests(self, generation: int, resend: list[pb.TagRequest]) -> Iterator[pb.TagRequest]:
        yield from resend
        while True:
            with self._pull:
                with self._state:
                    if generation != self._generation or self.exhausted or self.failure is not None:
                        return
                    request = self._ahead.popleft() if self._ahead else None
                if request is None:
                    try:
                        doc = next(self._source, _END)
                        if doc is _END:
                            self.exhausted = True
                            return
                        request = pb.TagRequest(document=document_to_pb(doc), options=self._options)
                    except BaseException as e:  # gRPC would swallow it into a bare CANCELLED
                        self.failure = e
                        return
                with self._state:
                    if generation != self._generation:
                        self._ahead.appendleft(request)
                        return
                    self.pending.append(request)
            yield request


def _utf8_safe(doc: Document) -> Document:
    """``doc`` with lone surrogates (which JSON escapes such as "\\ud800" can produce) replaced by U+FFFD.

    Protobuf strings must be UTF-8, which cannot hold them. Neither character is part of a word, so the
    model sees the same words either way; ``doc`` itself is returned when nothing needs replacing.
    """
    parts = (doc.id, doc.title, doc.body, *doc.tags)
    try:
        for part in parts:
            part.encode("utf-8")
        return doc
    except UnicodeEncodeError:
        pass
    fix = functools.partial(_SURROGATE.sub, "\ufffd")
    return replace(doc, id=fix(doc.id), title=fix(doc.title), body=fix(doc.body), tags=tuple(map(fix, doc.tags)))


_SURROGATE = re.compile("[\ud800-\udfff]")


class RemoteTagger:
    """:class:`tagger.tagger.Tagger`'s interface (tag, tag_many, tag_lines, topics, version, max_chars,
    on_too_long) answered by a server, so code written for a local Tagger can tag remotely."""

    def __init__(self, client: TaggerClient) -> None:
        self.client = client
        info = client.model_info()
        self.topics: tuple[str, ...] = tuple(info.topics)
        self.version = info.version
        self.max_chars = info.limits.max_chars
        self.on_too_long = "truncate" if info.limits.truncates_long_text else "reject"

    def tag_many(self, docs: Sequence[Document], options: TagOptions = TagOptions()) -> list[TagResult]:
        """Like Tagger.tag_many: results in order, scores included; a bad document raises InvalidDocumentError."""
        options.validate(self.topics)  # so INVALID_ARGUMENT below can only be about a document
        wire = [_utf8_safe(d) for d in docs]
        try:
            results = self.client.tag_batch(wire, options, include_scores=True)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidDocumentError(e.details()) from e
            raise
        # A document that had to be changed to travel gets its own id and tags back, as a local Tagger
        # would report them.
        return [r if w is d else replace(r, id=d.id, dropped_tags=d.tags) for r, w, d in zip(results, wire, docs)]

    def tag(self, doc: Document, options: TagOptions = TagOptions()) -> TagResult:
        return self.tag_many([doc], options)[0]

    def tag_lines(self, docs: Sequence[Document], options: TagOptions = TagOptions()) -> list[str]:
        """Like Tagger.tag_lines: each result as its JSON line."""
        return [r.to_json_line() for r in self.tag_many(docs, options)]
