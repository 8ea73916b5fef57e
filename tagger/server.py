"""The gRPC face of the tagger: ``tagger.v1.TopicTagger`` plus health, reflection, metrics and workers.

The servicer holds no model logic: it turns messages into Documents and TagOptions, calls
:meth:`Tagger.tag_many` on the model the :class:`~tagger.server_reload.ModelHolder` currently
serves, and turns TagResults back into messages (:mod:`tagger.grpc_wire`).

Processes: with ``workers > 1`` the parent loads and warms the model, then forks the workers before
any gRPC object exists (gRPC's multiprocessing example); each worker runs its own ``grpc.server``
bound to the same port with SO_REUSEPORT, so the kernel spreads connections over them and
tokenisation (pure Python) runs on every core. The parent only supervises: it restarts a worker
that dies and forwards SIGTERM/SIGINT.

Shutdown (SIGTERM/SIGINT): health turns NOT_SERVING, the server stops accepting RPCs, in-flight
RPCs get ``grace`` seconds to finish, and open TagStreams end after their current response with
UNAVAILABLE so the client resends what was not answered (``tagger.client`` does).
"""
from __future__ import annotations

import contextlib
import functools
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from tagger._proto import tagger_pb2 as pb
from tagger.artifacts import LoadedModel
from tagger.config import ServeConfig
from tagger.document import Document
from tagger.grpc_wire import (
    BadRequest,
    document_from_pb,
    model_info_pb,
    options_from_pb,
    result_to_pb,
    safe_deserializer,
    topics_pb,
)
from tagger.paths import default_model_root
from tagger.server_admission import BUSY, AdmissionInterceptor, BigRequests, DocumentBudget, Lane
from tagger.server_auth import AuthInterceptor, is_loopback, read_tokens, server_credentials
from tagger.server_coalesce import Coalescer
from tagger.server_metrics import (
    ServerMetrics,
    check_metrics_port,
    mark_process_dead,
    serve_metrics,
    use_multiprocess_dir,
    worker_restarts_counter,
)
from tagger.server_reload import ModelHolder, ModelSource, warm_up
from tagger.server_streams import OpenStreams
from tagger.tagger import InvalidDocumentError, Tagger, TagOptions, TagResult

__all__ = ["SERVICE_NAME", "TaggerServer", "TopicTaggerServicer", "make_holder", "plaintext_warning", "running",
           "serve"]

log = logging.getLogger("tagger.server")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["TopicTagger"].full_name
HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
METHODS = ("Tag", "TagBatch", "TagStream", "ListTopics", "GetModelInfo")
# Documents tagged between checks that the caller is still waiting (deadline, cancellation).
_CHUNK = 64
# A TagBatch request this large (bytes) leaves enough freed heap behind to be worth a malloc_trim.
_BIG_REQUEST = 8 << 20
_OK = grpc.StatusCode.OK
_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_NO_OPTIONS = TagOptions()  # what an empty pb.TagOptions converts to (options_from_pb), valid for every model


class _Fail(Exception):
    """Ends an RPC with this status; raised by handlers, turned into context.abort by _instrumented."""

    def __init__(self, code: grpc.StatusCode, message: str, trailing: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailing = trailing


def _gone_code(context: grpc.ServicerContext) -> grpc.StatusCode:
    remaining = context.time_remaining()
    return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED


def _documents_in(method: str, response: Any) -> int:
    if method == "Tag":
        return 1
    if method == "TagBatch":
        return len(response.results)
    return 0


class Lanes:
    """The thread pools of one server (see :mod:`tagger.server_admission`)."""

    def __init__(self, config: ServeConfig) -> None:
        batch = config.batch_thread_count
        self.control = Lane("control", 2)
        self.tag = Lane("tag", config.threads, config.max_concurrent_rpcs)
        # Room for as many batches waiting as running: each waits for at most one batch's time.
        self.batch = Lane("batch", batch, 2 * batch)
        self.misc = Lane("misc", 4)
        self.reject = Lane("reject", 1)
        self.hints = {"tag": "--max-concurrent-rpcs", "batch": "twice --batch-threads"}

    def shutdown(self) -> None:
        for lane in (self.control, self.tag, self.batch, self.misc, self.reject):
            lane.shutdown(wait=False, cancel_futures=True)


class TopicTaggerServicer:
    """The five RPCs of tagger.v1.TopicTagger over a ModelHolder."""

    def __init__(self, holder: ModelHolder, config: ServeConfig, metrics: ServerMetrics,
                 stopping: threading.Event, lanes: Lanes | None = None) -> None:
        self.holder = holder
        self.config = config
        self.metrics = metrics
        self.stopping = stopping
        self.lanes = lanes or Lanes(config)
        self.budget = DocumentBudget(config.inflight_document_limit)
        self.coalescer = Coalescer() if config.coalesce else None
        self.big_requests = BigRequests(_BIG_REQUEST)
        self.streams = OpenStreams(config.stream_limit, config.stream_idle_timeout)
        self.sampler: Any = None  # a tagger.review.sampler.ReviewSampler with --review-db
        self.limits = pb.ServerLimits(
            max_batch_documents=config.max_batch, max_chars=config.max_chars,
            truncates_long_text=config.on_too_long == "truncate", max_message_bytes=config.max_message_bytes,
        )

    # ---------------------------------------------------------------- helpers
    def _tagger(self) -> Tagger:
        tagger = self.holder.current
        if tagger is None:
            raise _Fail(grpc.StatusCode.UNAVAILABLE, "no model loaded yet; retry shortly")
        return tagger

    @staticmethod
    def _parsed(request: Any, where: str = "") -> None:
        if isinstance(request, BadRequest):
            raise _Fail(_INVALID, f"{where}{request.message}")

    @staticmethod
    def _options(tagger: Tagger, options: pb.TagOptions) -> tuple[TagOptions, bool]:
        if not options.ListFields():  # no option set (most requests): nothing to convert or check
            return _NO_OPTIONS, False
        opts, include_scores = options_from_pb(options)
        try:
            opts.validate(tagger.topics)
        except ValueError as e:  # includes UnknownTopicError
            raise _Fail(_INVALID, f"options: {e}") from None
        return opts, include_scores

    @staticmethod
    def _document(d: pb.Document, where: str) -> Document:
        try:
            return document_from_pb(d)
        except (TypeError, ValueError) as e:
            raise _Fail(_INVALID, f"{where}{e}") from None

    def _tag(self, tagger: Tagger, docs: Sequence[Document], options: TagOptions,
             context: grpc.ServicerContext, label: Callable[[int], str]) -> list[TagResult]:
        """tag_many in chunks, stopping early once the caller has gone (deadline passed or cancelled)."""
        out: list[TagResult] = []
        for start in range(0, len(docs), _CHUNK):
            if not context.is_active():
                raise _Fail(_gone_code(context), "the caller stopped waiting")
            chunk = docs[start:start + _CHUNK]
            try:
                out.extend(tagger.tag_many(chunk, options))
            except InvalidDocumentError as e:
                bad = next((i for i, d in enumerate(chunk) if _fails_check(tagger, d)), 0)
                raise _Fail(_INVALID, f"{label(start + bad)}{e}") from None
        truncated = sum(r.truncated for r in out)
        if truncated:
            self.metrics.truncated.inc(truncated)
        if self.sampler is not None:
            self.sampler.offer(docs, out)  # never blocks or raises (tagger.review.sampler)
        return out

    def _tag_one(self, tagger: Tagger, doc: Document, options: TagOptions, context: grpc.ServicerContext,
                 where: str) -> TagResult:
        """One document, tagged together with other threads' single documents (server_coalesce)."""
        if not context.is_active():
            raise _Fail(_gone_code(context), "the caller stopped waiting")
        try:
            if self.coalescer is not None:
                result = self.coalescer.tag(tagger, doc, options)
            else:
                [result] = tagger.tag_many([doc], options)
        except InvalidDocumentError as e:
            raise _Fail(_INVALID, f"{where}{e}") from None
        if result.truncated:
            self.metrics.truncated.inc()
        if self.sampler is not None:
            self.sampler.offer([doc], [result])  # never blocks or raises (tagger.review.sampler)
        return result

    # ---------------------------------------------------------------- RPCs
    def Tag(self, request: pb.TagRequest, context: grpc.ServicerContext) -> pb.TagResponse:
        self._parsed(request)
        tagger = self._tagger()
        options, include_scores = self._options(tagger, request.options)
        doc = self._document(request.document, "document: ")
        return result_to_pb(self._tag_one(tagger, doc, options, context, ""), include_scores)

    def TagBatch(self, request: pb.TagBatchRequest, context: grpc.ServicerContext) -> pb.TagBatchResponse:
        self._parsed(request)
        n = len(request.documents)
        if n > self.config.max_batch:
            raise _Fail(_INVALID, f"TagBatch has {n} documents, over this server's limit of {self.config.max_batch} "
                                  "(GetModelInfo limits.max_batch_documents); split the batch")
        tagger = self._tagger()  # one model version for the whole batch
        options, include_scores = self._options(tagger, request.options)
        if not self.budget.take(n):
            raise _Fail(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"this server worker is busy: {self.budget.in_use} documents are being tagged and "
                        f"{n} more would go over its limit of {self.budget.limit} (--max-inflight-documents); "
                        "retry with backoff, or send smaller batches", BUSY)
        big = n > 0 and self.big_requests.start(request.ByteSize())
        try:
            docs = [self._document(d, f"documents[{i}]: ") for i, d in enumerate(request.documents)]
            results = self._tag(tagger, docs, options, context, lambda i: f"documents[{i}]: ")
            del docs
            self.metrics.batch_size.observe(n)  # batches tagged; a refused one is in tagger_grpc_requests_total
            return pb.TagBatchResponse(results=[result_to_pb(r, include_scores) for r in results])
        finally:
            self.budget.give_back(n)
            if big:
                self.big_requests.end()

    def TagStream(self, requests: Iterator[pb.TagRequest], context: grpc.ServicerContext) -> Iterator[pb.TagResponse]:
        stream = self.streams.open(context)
        if stream is None:  # each open stream holds a thread: the rest are kept for other calls
            raise _Fail(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{self.streams.limit} streams are already open on this server worker (--max-streams); "
                        f"retry later, or send documents with TagBatch", BUSY)
        try:
            for n, request in enumerate(self.streams.watch(stream, requests)):
                where = f"stream message {n}: "
                self._parsed(request, where)
                tagger = self._tagger()  # per message: a long stream follows reloads
                options, include_scores = self._options(tagger, request.options)
                doc = self._document(request.document, where)
                yield result_to_pb(self._tag_one(tagger, doc, options, context, where), include_scores)
                if self.stopping.is_set():
                    raise _Fail(grpc.StatusCode.UNAVAILABLE,
                                f"server is shutting down after {n + 1} responses; resend the unanswered requests")
        finally:
            self.streams.close(stream)

    def ListTopics(self, request: pb.ListTopicsRequest, context: grpc.ServicerContext) -> pb.ListTopicsResponse:
        self._parsed(request)
        return topics_pb(self._tagger().loaded)

    def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        self._parsed(request)
        return model_info_pb(self._tagger().loaded, self.limits)

    # ---------------------------------------------------------------- wiring
    def _instrumented(self, method: str, fn: Callable) -> Callable:
        """Metrics for every RPC, and _Fail / unexpected exceptions turned into status codes."""
        metrics = self.metrics

        def finish(context: grpc.ServicerContext, start: float, code: grpc.StatusCode, docs: int) -> None:
            if code is _OK and not context.is_active():
                code, docs = _gone_code(context), 0
            metrics.finished(method, code, time.perf_counter() - start, docs)

        def abort(context: grpc.ServicerContext, e: Exception) -> NoReturn:
            if isinstance(e, _Fail):
                if e.trailing:
                    context.set_trailing_metadata(e.trailing)
                context.abort(e.code, e.message)
            log.exception("%s failed", method)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(e).__name__}); see the server log")

        if method == "TagStream":
            @functools.wraps(fn)
            def stream_handler(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                start, code, docs = time.perf_counter(), _OK, 0
                metrics.started()
                try:
                    for response in fn(requests, context):
                        docs += 1
                        yield response
                except grpc.RpcError:
                    # Reading the next request failed: the call is already cancelled (by the client, the
                    # idle-stream reaper or shutdown), so there is nobody to answer and nothing to log.
                    code = grpc.StatusCode.CANCELLED
                except Exception as e:
                    code = e.code if isinstance(e, _Fail) else grpc.StatusCode.INTERNAL
                    abort(context, e)
                finally:
                    finish(context, start, code, docs)
            return stream_handler

        @functools.wraps(fn)
        def unary_handler(request: Any, context: grpc.ServicerContext) -> Any:
            start, code, docs = time.perf_counter(), _OK, 0
            metrics.started()
            try:
                response = fn(request, context)
                docs = _documents_in(method, response)
                return response
            except Exception as e:
                code = e.code if isinstance(e, _Fail) else grpc.StatusCode.INTERNAL
                abort(context, e)
            finally:
                finish(context, start, code, docs)
        return unary_handler

    def add_to_server(self, server: grpc.Server) -> None:
        """Register the RPCs, like the generated add_TopicTaggerServicer_to_server but with request
        deserializers that report invalid UTF-8 as INVALID_ARGUMENT (see grpc_wire.safe_deserializer)."""
        lanes = self.lanes

        def in_lane(name: str, lane: Lane) -> Callable:
            handler = self._instrumented(name, getattr(self, name))
            handler.experimental_thread_pool = lane  # type: ignore[attr-defined]  # grpcio's per-method pool
            return handler

        def unary(name: str, req: Any, resp: Any, lane: Lane) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                in_lane(name, lane), request_deserializer=safe_deserializer(req),
                response_serializer=resp.SerializeToString)

        handlers = {
            "Tag": unary("Tag", pb.TagRequest, pb.TagResponse, lanes.tag),
            "TagBatch": unary("TagBatch", pb.TagBatchRequest, pb.TagBatchResponse, lanes.batch),
            "TagStream": grpc.stream_stream_rpc_method_handler(
                in_lane("TagStream", lanes.tag), request_deserializer=safe_deserializer(pb.TagRequest),
                response_serializer=pb.TagResponse.SerializeToString),
            "ListTopics": unary("ListTopics", pb.ListTopicsRequest, pb.ListTopicsResponse, lanes.control),
            "GetModelInfo": unary("GetModelInfo", pb.GetModelInfoRequest, pb.ModelInfo, lanes.control),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
        server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _fails_check(tagger: Tagger, doc: Document) -> bool:
    try:
        tagger.check(doc)
        return False
    except InvalidDocumentError:
        return True


def make_holder(config: ServeConfig, loaded: LoadedModel | None = None) -> ModelHolder:
    """The model holder for a config; with ``loaded``, that model is served first (not re-read from disk).

    Raises ArtifactError if the model folder holds no model.
    """
    source = ModelSource(config.model or default_model_root())
    holder = ModelHolder(
        source, lambda m: Tagger(m, max_chars=config.max_chars, on_too_long=config.on_too_long),
        interval=config.reload_interval,
    )
    if config.model_public_key is not None:
        from tagger.server_trust import ManifestVerifier  # cryptography loads only when signatures are on

        holder.verifier = ManifestVerifier(config.model_public_key)
    if loaded is not None:
        if holder.verifier is not None:
            holder.verifier.check_loaded(holder.verifier.verify(loaded.path), loaded.manifest, loaded.path)
        holder.current = holder.make_tagger(loaded)
    return holder


@contextlib.contextmanager
def running(config: ServeConfig, holder: ModelHolder | None = None) -> Iterator[TaggerServer]:
    """A started, SERVING server in this process (for tests and embedding); stopped on exit."""
    server = TaggerServer(config, holder)
    server.start()
    try:
        server.ready()
        yield server
    finally:
        server.stop(0)


class TaggerServer:
    """One gRPC server in this process: TopicTagger, health, reflection, metrics and the model reloader.

    ``start()`` listens with health NOT_SERVING; ``ready()`` loads (unless the holder already has a
    model), warms, starts the reloader and turns health SERVING; ``stop()`` shuts down gracefully.
    """

    def __init__(self, config: ServeConfig, holder: ModelHolder | None = None, *, serve_metrics: bool = True) -> None:
        self.config = config
        self.holder = holder or make_holder(config)
        self.metrics = ServerMetrics(METHODS)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.stopping = threading.Event()
        self.lanes = Lanes(config)
        self.servicer = TopicTaggerServicer(self.holder, config, self.metrics, self.stopping, self.lanes)
        self._serve_metrics = serve_metrics
        self._metrics_http: Any = None
        self._server: grpc.Server | None = None
        self._health_server: grpc.Server | None = None
        self.port = 0
        self.metrics_port = 0

    def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, status)

    def start(self) -> int:
        """Listen (health NOT_SERVING until ready()); returns the bound port."""
        cfg = self.config
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        lanes = self.lanes
        interceptors: list[grpc.ServerInterceptor] = []
        if cfg.token_file is not None:
            interceptors.append(AuthInterceptor(_tokens(cfg.token_file), lanes.reject, self.metrics.refused))
        interceptors.append(AdmissionInterceptor(lanes.misc, lanes.reject, self.metrics.refused, lanes.hints))
        options: list[tuple[str, Any]] = [
            ("grpc.so_reuseport", 1),  # workers (and a replacement server during a deploy) share the port
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", cfg.max_message_bytes),
        ]
        if cfg.max_connection_age > 0:
            # Clients reconnect (and re-resolve) after a GOAWAY, so connections spread again over a restarted
            # worker or a new pod; RPCs open at the GOAWAY get --grace to finish.
            options += [("grpc.max_connection_age_ms", int(cfg.max_connection_age * 1000)),
                        ("grpc.max_connection_age_grace_ms", int(cfg.grace * 1000))]
        # Concurrency is limited per lane by the admission interceptor, not by gRPC's maximum_concurrent_rpcs,
        # which counts health checks too and would refuse a probe while tagging is busy.
        server = grpc.server(lanes.misc, options=options, interceptors=interceptors)
        self.servicer.add_to_server(server)
        self._add_health(server)
        if cfg.reflection:
            reflection.enable_server_reflection((SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{cfg.host}:{cfg.port}"
        try:
            if cfg.tls_cert is not None and cfg.tls_key is not None:
                self.port = server.add_secure_port(address, server_credentials(cfg.tls_cert, cfg.tls_key,
                                                                               cfg.tls_client_ca))
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {address}: {e}") from e
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        server.start()
        self._server = server
        self.metrics.start_flushing()
        if cfg.health_port:
            self._health_server = self._start_health_port()
        if self._serve_metrics and cfg.metrics_port:
            self._metrics_http, _ = serve_metrics(self.metrics.collector_registry(), cfg.metrics_address,
                                                  cfg.metrics_port)
            self.metrics_port = self._metrics_http.server_port
        return self.port

    def _start_health_port(self) -> grpc.Server:
        """A plaintext server of grpc.health.v1 only (no tagging, nothing secret), for TLS-less probes."""
        cfg = self.config
        server = grpc.server(self.lanes.control, options=[("grpc.so_reuseport", 1)])
        self._add_health(server)
        address = f"{cfg.host}:{cfg.health_port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {address} (--health-port): {e}") from e
        if not bound:
            raise OSError(f"cannot listen on {address} (--health-port)")
        server.start()
        return server

    def _add_health(self, server: grpc.Server) -> None:
        """grpc.health.v1.Health, with Check on the control lane: a probe never waits behind tagging."""
        health = self.health

        def check(request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> Any:
            return health.Check(request, context)

        check.experimental_thread_pool = self.lanes.control  # type: ignore[attr-defined]
        handlers = {
            "Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=health_pb2.HealthCheckRequest.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
            "Watch": grpc.unary_stream_rpc_method_handler(
                health.Watch, request_deserializer=health_pb2.HealthCheckRequest.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(HEALTH_SERVICE_NAME, handlers),))

    def ready(self) -> None:
        """Load and warm the model if needed, start hot reload, then report SERVING."""
        holder = self.holder
        holder.on_swap = self.metrics.model_swapped
        holder.on_reload = lambda ok: self.metrics.reloads.labels("ok" if ok else "failed").inc()
        if holder.current is None:
            holder.load_initial()  # loads, warms and reports the swap
        else:
            if holder.interval > 0:
                holder.check_now()  # a restarted worker catches up with versions published since the fork
            warm_up(holder.current)
            self.metrics.model_swapped(None, holder.current.version)
        holder.start()
        if self.config.review_db and self.servicer.sampler is None:
            self.servicer.sampler = _review_sampler(self.config, holder.current, self.metrics)
        self.servicer.streams.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, refuse new RPCs, give in-flight ones ``grace`` seconds (default: the config's)."""
        self.health.enter_graceful_shutdown()
        self.stopping.set()
        self.holder.stop()
        done = self._server.stop(self.config.grace if grace is None else grace) if self._server is not None else None
        # New calls are refused from here on; streams idling for a message would hold shutdown for the whole
        # grace period, so they are cancelled now (busy ones finish their message, then end UNAVAILABLE).
        self.servicer.streams.stop()
        if done is not None:
            done.wait()
        if self.servicer.sampler is not None:
            self.servicer.sampler.close()
            self.servicer.sampler.store.close()
        if self._health_server is not None:
            self._health_server.stop(0).wait()
        self.metrics.stop_flushing()  # the last calls' metrics, before this worker's files are left behind
        self.lanes.shutdown()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()


def _review_sampler(config: ServeConfig, tagger: Tagger, metrics: ServerMetrics) -> Any:
    """--review-db: queue a sample of served documents for editors (imported only when asked for)."""
    from tagger.review.queue import QueueBuilder
    from tagger.review.sampler import ReviewSampler
    from tagger.review.store import Store

    store = Store(config.review_db, topics=tagger.topics)
    return ReviewSampler(store, QueueBuilder.for_model(tagger.loaded), config.review_sample,
                         registry=metrics.registry)


def plaintext_warning(config: ServeConfig) -> str | None:
    """The start-up warning for a server without TLS on an address other machines can reach, else None."""
    if config.tls_cert is not None or is_loopback(config.host):
        return None
    return (f"serving PLAINTEXT on {config.host}, which is not a loopback address: requests, results and tokens "
            "cross the network unencrypted; give --tls-cert and --tls-key (or keep --host 127.0.0.1 behind a "
            "TLS-terminating proxy or mesh)")


def _tokens(path: Path) -> list[str]:
    try:
        return read_tokens(path)
    except (OSError, ValueError) as e:
        raise OSError(f"--token-file: {e}") from e


# -------------------------------------------------------------------- processes
def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s")
    logging.getLogger().setLevel(level)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _on_stop_signals(callback: Callable[[], None]) -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: callback())


def _describe(config: ServeConfig, port: int, holder: ModelHolder, metrics_port: int) -> str:
    host = config.metrics_address
    metrics = f"http://{f'[{host}]' if ':' in host else host}:{metrics_port}/metrics" if metrics_port else "off"
    security = ("mutual TLS" if config.tls_client_ca else "TLS") if config.tls_cert else "plaintext"
    return (f"ready: {config.workers} worker(s) serving {SERVICE_NAME} on {config.host}:{port}, "
            f"model {holder.current.version if holder.current else '?'}, metrics {metrics}, "
            f"reflection {'on' if config.reflection else 'off'}, {security}, "
            f"token auth {'on' if config.token_file else 'off'}")


def _wait_for(stop: threading.Event, parent_pid: int | None = None) -> None:
    # Short timeouts keep the main thread responsive to signals; a worker also leaves if its parent died.
    while not stop.wait(0.5):
        if parent_pid is not None and os.getppid() != parent_pid:
            log.error("parent process %d is gone; shutting down", parent_pid)
            return


def serve(config: ServeConfig) -> int:
    """Run ``tagger serve`` until SIGTERM/SIGINT; returns the exit code.

    Raises ArtifactError (no loadable model) or OSError (cannot listen) before serving anything.
    """
    _setup_logging(config.log_level)
    check_metrics_port(config.metrics_address, config.metrics_port)  # before any worker: one clear error
    if config.token_file is not None:
        _tokens(config.token_file)  # an unreadable or empty token file is an error before anything starts
    warning = plaintext_warning(config)
    if warning:
        log.warning(warning)
    stop = threading.Event()
    loading = [True]

    def on_signal() -> None:
        stop.set()
        if loading[0]:  # the model load is plain Python in this thread: interrupt it
            raise _StopBeforeServing

    _on_stop_signals(on_signal)
    try:
        log.info("loading the model from %s", config.model or default_model_root())
        holder = make_holder(config)
        holder.load_initial()  # in the parent: fail fast, and forked workers share the loaded pages
        loading[0] = False
    except _StopBeforeServing:
        log.info("stop signal while loading the model: stopped before serving")
        return 0
    _on_stop_signals(stop.set)
    if config.workers == 1:
        return _serve_single(config, holder, stop)
    return _Supervisor(config, holder, stop).run()


class _StopBeforeServing(BaseException):
    """Raised by the SIGTERM/SIGINT handler while the model loads, so start-up ends cleanly (exit 0).

    A BaseException, like KeyboardInterrupt: the loader treats any Exception as "this version is bad,
    try the next one", which would turn a stop into loading an older model.
    """


def _serve_single(config: ServeConfig, holder: ModelHolder, stop: threading.Event) -> int:
    server = TaggerServer(config, holder)
    port = server.start()
    server.ready()
    log.info(_describe(config, port, holder, server.metrics_port))
    _wait_for(stop)
    log.info("shutting down: NOT_SERVING, finishing in-flight RPCs (grace %.1fs)", config.grace)
    server.stop()
    log.info("stopped")
    return 0


@contextlib.contextmanager
def _reserved_port(host: str, port: int) -> Iterator[int]:
    """Bind (not listen) a SO_REUSEPORT socket so every worker gets the same port, even when port is 0."""
    bare = host.strip("[]")
    family, _, _, _, sockaddr = socket.getaddrinfo(bare or None, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        if family != socket.AF_INET6 or bare not in ("", "::"):
            raise
        # No IPv6 here: gRPC binds "[::]" as 0.0.0.0 then, and the reservation must match it.
        family, sockaddr = socket.AF_INET, ("0.0.0.0", port)
        sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(sockaddr)
        except OSError as e:
            raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from e
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _worker_main(config: ServeConfig, holder: ModelHolder, index: int, conn: Connection, parent_pid: int) -> None:
    """A forked worker: its own gRPC server on the shared port; worker 0 also serves /metrics."""
    stop = threading.Event()
    _on_stop_signals(stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    server = TaggerServer(config, holder, serve_metrics=index == 0)
    server.start()
    server.ready()
    conn.send(("ready", server.metrics_port))
    _wait_for(stop, parent_pid)
    server.stop()


class _Supervisor:
    """The parent of ``--workers N``: forks workers, restarts a dead one, stops them all on a signal."""

    def __init__(self, config: ServeConfig, holder: ModelHolder, stop: threading.Event) -> None:
        self.config = config
        self.holder = holder
        self.ctx = multiprocessing.get_context("fork")
        self.procs: dict[int, multiprocessing.process.BaseProcess] = {}
        self.conns: dict[int, Connection] = {}
        self.ready: set[int] = set()
        self.stop = stop

    def _spawn(self, index: int, config: ServeConfig) -> None:
        recv, send = self.ctx.Pipe(duplex=False)
        # Blocked across the fork so a signal cannot reach the child before it installs its own handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            proc = self.ctx.Process(target=_worker_main, name=f"tagger-worker-{index}",
                                    args=(config, self.holder, index, send, os.getpid()))
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        send.close()
        self.procs[index], self.conns[index] = proc, recv

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="tagger-metrics-")
        use_multiprocess_dir(metrics_dir)
        self.restarts = worker_restarts_counter()
        # The loaded model moves to the permanent generation: the workers' garbage collector then
        # neither scans it nor writes to its pages, which stay shared with the parent (copy-on-write).
        gc.freeze()
        try:
            with _reserved_port(self.config.host, self.config.port) as port:
                return self._supervise(self.config.with_overrides(port=port))
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _supervise(self, config: ServeConfig) -> int:
        for i in range(config.workers):
            self._spawn(i, config)
        announced, failures, metrics_port, code = False, 0, 0, 0
        while not self.stop.is_set():
            by_handle: dict[Any, tuple[str, int]] = {p.sentinel: ("exit", i) for i, p in self.procs.items()}
            by_handle.update({c: ("msg", i) for i, c in self.conns.items()})
            for handle in wait(list(by_handle), timeout=0.5):
                kind, i = by_handle[handle]
                if (self.conns.get(i) if kind == "msg" else getattr(self.procs.get(i), "sentinel", None)) != handle:
                    continue  # that worker was handled earlier in this round
                if kind == "msg":
                    try:
                        _, port_seen = self.conns[i].recv()
                    except EOFError:  # the worker died; its sentinel reports it
                        continue
                    self.ready.add(i)
                    failures = 0
                    metrics_port = port_seen or metrics_port
                    if announced:
                        log.info("worker %d (pid %d) is serving", i, self.procs[i].pid)
                    elif len(self.ready) == config.workers:
                        log.info(_describe(config, config.port, self.holder, metrics_port))
                        announced = True
                    continue
                proc = self.procs[i]
                if proc.is_alive() and proc.exitcode is None:
                    continue
                proc.join()
                was_ready = i in self.ready
                self.ready.discard(i)
                self.conns.pop(i).close()
                mark_process_dead(proc.pid)
                if self.stop.is_set():
                    # Told to stop together with us (systemd and Ctrl-C signal every process): no restart.
                    log.info("worker %d (pid %d) stopped", i, proc.pid)
                    self.procs.pop(i)
                    continue
                # Any other exit was not asked for, whatever its code (a SIGTERM sent to the worker alone
                # exits 0): capacity would shrink while health stays SERVING, so the worker is replaced.
                self.restarts.labels("exit 0" if proc.exitcode == 0 else "crash").inc()
                failures += 0 if was_ready else 1
                if not announced or failures >= 3:
                    log.error("worker %d (pid %d) exited with code %s before serving; stopping", i, proc.pid,
                              proc.exitcode)
                    self.procs.pop(i)
                    self.stop.set()
                    code = 1
                    break
                log.warning("worker %d (pid %d) exited with code %s without being asked to; starting a new one",
                            i, proc.pid, proc.exitcode)
                self._spawn(i, config)
        self._stop_workers()
        return code

    def _stop_workers(self) -> None:
        log.info("shutting down %d worker(s): NOT_SERVING, finishing in-flight RPCs (grace %.1fs)",
                 len(self.procs), self.config.grace)
        for proc in self.procs.values():
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace + 5
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join()
        log.info("stopped")
