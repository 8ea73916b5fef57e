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
from concurrent import futures
from multiprocessing.connection import Connection, wait
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
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
from tagger.server_metrics import (
    ServerMetrics,
    check_metrics_port,
    mark_process_dead,
    serve_metrics,
    use_multiprocess_dir,
)
from tagger.server_reload import ModelHolder, ModelSource, warm_up
from tagger.server_streams import OpenStreams
from tagger.tagger import InvalidDocumentError, Tagger, TagOptions, TagResult

__all__ = ["SERVICE_NAME", "TaggerServer", "TopicTaggerServicer", "make_holder", "running", "serve"]

log = logging.getLogger("tagger.server")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["TopicTagger"].full_name
HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
METHODS = ("Tag", "TagBatch", "TagStream", "ListTopics", "GetModelInfo")
# Documents tagged between checks that the caller is still waiting (deadline, cancellation).
_CHUNK = 64
_OK = grpc.StatusCode.OK
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


class _Fail(Exception):
    """Ends an RPC with this status; raised by handlers, turned into context.abort by _instrumented."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _gone_code(context: grpc.ServicerContext) -> grpc.StatusCode:
    remaining = context.time_remaining()
    return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED


def _documents_in(method: str, response: Any) -> int:
    if method == "Tag":
        return 1
    if method == "TagBatch":
        return len(response.results)
    return 0


class TopicTaggerServicer:
    """The five RPCs of tagger.v1.TopicTagger over a ModelHolder."""

    def __init__(self, holder: ModelHolder, config: ServeConfig, metrics: ServerMetrics,
                 stopping: threading.Event) -> None:
        self.holder = holder
        self.config = config
        self.metrics = metrics
        self.stopping = stopping
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

    # ---------------------------------------------------------------- RPCs
    def Tag(self, request: pb.TagRequest, context: grpc.ServicerContext) -> pb.TagResponse:
        self._parsed(request)
        tagger = self._tagger()
        options, include_scores = self._options(tagger, request.options)
        doc = self._document(request.document, "document: ")
        [result] = self._tag(tagger, [doc], options, context, lambda i: "")
        return result_to_pb(result, include_scores)

    def TagBatch(self, request: pb.TagBatchRequest, context: grpc.ServicerContext) -> pb.TagBatchResponse:
        self._parsed(request)
        n = len(request.documents)
        if n > self.config.max_batch:
            raise _Fail(_INVALID, f"TagBatch has {n} documents, over this server's limit of {self.config.max_batch} "
                                  "(GetModelInfo limits.max_batch_documents); split the batch")
        tagger = self._tagger()  # one model version for the whole batch
        options, include_scores = self._options(tagger, request.options)
        docs = [self._document(d, f"documents[{i}]: ") for i, d in enumerate(request.documents)]
        results = self._tag(tagger, docs, options, context, lambda i: f"documents[{i}]: ")
        self.metrics.batch_size.observe(n)  # batches tagged; a refused one is in tagger_grpc_requests_total
        return pb.TagBatchResponse(results=[result_to_pb(r, include_scores) for r in results])

    def TagStream(self, requests: Iterator[pb.TagRequest], context: grpc.ServicerContext) -> Iterator[pb.TagResponse]:
        stream = self.streams.open(context)
        if stream is None:  # each open stream holds a thread: the rest are kept for other calls
            raise _Fail(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{self.streams.limit} streams are already open on this server worker (--max-streams); "
                        f"retry later, or send documents with TagBatch")
        try:
            for n, request in enumerate(self.streams.watch(stream, requests)):
                where = f"stream message {n}: "
                self._parsed(request, where)
                tagger = self._tagger()  # per message: a long stream follows reloads
                options, include_scores = self._options(tagger, request.options)
                doc = self._document(request.document, where)
                [result] = self._tag(tagger, [doc], options, context, lambda i, w=where: w)
                yield result_to_pb(result, include_scores)
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
            metrics.inflight.dec()
            metrics.observe(method, code, time.perf_counter() - start, docs)

        def abort(context: grpc.ServicerContext, e: Exception) -> NoReturn:
            if isinstance(e, _Fail):
                context.abort(e.code, e.message)
            log.exception("%s failed", method)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(e).__name__}); see the server log")

        if method == "TagStream":
            @functools.wraps(fn)
            def stream_handler(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                start, code, docs = time.perf_counter(), _OK, 0
                metrics.inflight.inc()
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
            metrics.inflight.inc()
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
        def unary(name: str, req: Any, resp: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                self._instrumented(name, getattr(self, name)), request_deserializer=safe_deserializer(req),
                response_serializer=resp.SerializeToString)

        handlers = {
            "Tag": unary("Tag", pb.TagRequest, pb.TagResponse),
            "TagBatch": unary("TagBatch", pb.TagBatchRequest, pb.TagBatchResponse),
            "TagStream": grpc.stream_stream_rpc_method_handler(
                self._instrumented("TagStream", self.TagStream), request_deserializer=safe_deserializer(pb.TagRequest),
                response_serializer=pb.TagResponse.SerializeToString),
            "ListTopics": unary("ListTopics", pb.ListTopicsRequest, pb.ListTopicsResponse),
            "GetModelInfo": unary("GetModelInfo", pb.GetModelInfoRequest, pb.ModelInfo),
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
    if loaded is not None:
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
        self.servicer = TopicTaggerServicer(self.holder, config, self.metrics, self.stopping)
        self._serve_metrics = serve_metrics
        self._metrics_http: Any = None
        self._server: grpc.Server | None = None
        self.port = 0
        self.metrics_port = 0

    def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, status)

    def start(self) -> int:
        """Listen (health NOT_SERVING until ready()); returns the bound port."""
        cfg = self.config
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix="tagger-rpc"),
            options=[
                ("grpc.so_reuseport", 1),  # workers (and a replacement server during a deploy) share the port
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.max_send_message_length", cfg.max_message_bytes),
            ],
            maximum_concurrent_rpcs=cfg.max_concurrent_rpcs or None,
        )
        self.servicer.add_to_server(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if cfg.reflection:
            reflection.enable_server_reflection((SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{cfg.host}:{cfg.port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {address}: {e}") from e
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        server.start()
        self._server = server
        if self._serve_metrics and cfg.metrics_port:
            self._metrics_http, _ = serve_metrics(self.metrics.collector_registry(), cfg.metrics_host, cfg.metrics_port)
            self.metrics_port = self._metrics_http.server_port
        return self.port

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


# -------------------------------------------------------------------- processes
def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s")
    logging.getLogger().setLevel(level)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _on_stop_signals(callback: Callable[[], None]) -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: callback())


def _describe(config: ServeConfig, port: int, holder: ModelHolder, metrics_port: int) -> str:
    metrics = f"http://{config.metrics_host}:{metrics_port}/metrics" if metrics_port else "off"
    return (f"ready: {config.workers} worker(s) serving {SERVICE_NAME} on {config.host}:{port}, "
            f"model {holder.current.version if holder.current else '?'}, metrics {metrics}, "
            f"reflection {'on' if config.reflection else 'off'}")


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
    check_metrics_port(config.metrics_host, config.metrics_port)  # before any worker: one clear error
    holder = make_holder(config)
    holder.load_initial()  # in the parent: fail fast, and forked workers share the loaded pages
    if config.workers == 1:
        return _serve_single(config, holder)
    return _Supervisor(config, holder).run()


def _serve_single(config: ServeConfig, holder: ModelHolder) -> int:
    stop = threading.Event()
    _on_stop_signals(stop.set)
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

    def __init__(self, config: ServeConfig, holder: ModelHolder) -> None:
        self.config = config
        self.holder = holder
        self.ctx = multiprocessing.get_context("fork")
        self.procs: dict[int, multiprocessing.process.BaseProcess] = {}
        self.conns: dict[int, Connection] = {}
        self.ready: set[int] = set()
        self.stop = threading.Event()

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
        _on_stop_signals(self.stop.set)
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
                    if not announced and len(self.ready) == config.workers:
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
                if proc.exitcode == 0:
                    # A worker exits 0 only when told to stop (systemd and Ctrl-C signal every process).
                    log.info("worker %d (pid %d) stopped", i, proc.pid)
                    self.procs.pop(i)
                    if not self.procs:
                        self.stop.set()
                    continue
                failures += 0 if was_ready else 1
                if not announced or failures >= 3:
                    log.error("worker %d (pid %d) exited with code %s before serving; stopping", i, proc.pid,
                              proc.exitcode)
                    self.procs.pop(i)
                    self.stop.set()
                    code = 1
                    break
                log.warning("worker %d (pid %d) exited with code %s; starting a new one", i, proc.pid, proc.exitcode)
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
