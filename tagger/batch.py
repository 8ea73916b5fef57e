"""Offline batch tagging: inputs → one JSONL line per tagged document, a rejects file, resume, workers.

The flow is one-way and every stage is bounded, so memory stays constant whatever the input size:

    main process: read chunks of raw records (tagger.readers) ─► worker(s): records → Documents →
    Tagger.tag_many → JSON lines ─► main process: write output and rejects in input order, checkpoint

Tagging goes through :meth:`tagger.tagger.Tagger.tag_many`, the one predict path the server and the
CLI use; this module only moves records in and lines out. Workers get raw bytes and do all decoding,
parsing and cleaning, so the main process never becomes the bottleneck with ``n_process`` > 1.
"""
from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tagger.artifacts import LoadedModel, load_model
from tagger.document import Document
from tagger.kept import check_keep, kept_values, with_kept
from tagger.paths import default_model_root
from tagger.readers import (
    Chunk,
    Fields,
    InputError,
    InputSpec,
    Reject,
    check_csv_columns,
    input_fingerprint,
    iter_chunks,
    parse_record,
    resolve_inputs,
    to_document,
)
from tagger.tagger import (
    DEFAULT_MAX_CHARS,
    InvalidDocumentError,
    Tagger,
    TagOptions,
    TagResult,
)
from tagger.writers import OutputSink, Position, SinkError

__all__ = ["BatchConfig", "BatchStats", "BatchError", "ChunkTagger", "run_batch", "DEFAULT_CHUNK_SIZE"]

#: Records per chunk: large enough to amortise inter-process transfer, small enough that a checkpoint
#: never lags far behind.
DEFAULT_CHUNK_SIZE = 256


class BatchError(RuntimeError):
    """A batch run cannot start or continue; the message is one line for the user."""


@dataclass(frozen=True)
class BatchConfig:
    """One batch run. ``rejects`` defaults to ``<output>.rejects.jsonl``."""

    inputs: tuple[str, ...]
    output: Path
    rejects: Path | None = None
    model: Path | None = None
    fields: Fields = Fields()
    input_format: str | None = None
    options: TagOptions = TagOptions()
    keep: tuple[str, ...] = ()  # input fields copied into each output line (tagger.kept)
    max_chars: int = DEFAULT_MAX_CHARS
    on_too_long: str = "reject"
    n_process: int = 1
    chunk_size: int = DEFAULT_CHUNK_SIZE
    resume: bool = False
    force: bool = False
    progress: bool = False
    checkpoint_seconds: float = 2.0  # how often the checkpoint (two fsyncs and a rename) is renewed

    @property
    def rejects_path(self) -> Path:
        return self.rejects or Path(f"{self.output}.rejects.jsonl")

    @property
    def checkpoint_path(self) -> Path:
        return Path(f"{self.output}.checkpoint.json")


@dataclass
class BatchStats:
    """Totals of the whole job (across resumes); ``seconds`` and the rate are of this run."""

    read: int = 0
    tagged: int = 0
    rejected: int = 0
    seconds: float = 0.0
    this_run: int = 0  # records processed by this run (the rest were done before a resume)
    already_complete: bool = False

    @property
    def docs_per_second(self) -> float:
        return self.this_run / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"docs_per_second": round(self.docs_per_second, 1)}

    def summary(self, rejects: Path) -> str:
        if self.already_complete:
            return f"already complete: {self.tagged:,} tagged, {self.rejected:,} rejected of {self.read:,} read"
        resumed = f" (resumed: {self.this_run:,} this run)" if self.this_run != self.read else ""
        return (
            f"read {self.read:,}, tagged {self.tagged:,}, rejected {self.rejected:,}"
            f"{f' (see {rejects})' if self.rejected else ''}{resumed} in {self.seconds:.1f}s, "
            f"{self.docs_per_second:,.0f} docs/s"
        )


# ------------------------------------------------------------------------------- tagging
class ChunkTagger:
    """Turns a chunk of raw records into tag results and rejects, in input order.

    Valid documents of a chunk go to :meth:`Tagger.tag_many` together. The Tagger has the last word
    on what is taggable: if it refuses a document (too long under the reject policy, nothing left
    after cleaning), the chunk is retried one document at a time to find which.
    """

    def __init__(self, tagger: Tagger, options: TagOptions, fields: Fields, keep: Sequence[str] = ()) -> None:
        self.tagger, self.options, self.fields = tagger, options, fields
        self.keep = check_keep(keep)

    def results(self, chunk: Chunk) -> list[TagResult | Reject]:
        return self._tag(chunk, self.tagger.tag_many)

    def lines(self, chunk: Chunk) -> list[str | Reject]:
        """:meth:`results` with each result as its JSON line (:meth:`Tagger.tag_lines`), the ``keep``
        fields of its record first (:mod:`tagger.kept`)."""
        if not self.keep:
            return self._tag(chunk, self.tagger.tag_lines)
        records: list[Any] = []
        out = self._tag(chunk, self.tagger.tag_lines, records)
        return [r if isinstance(r, Reject) else with_kept(r, kept_values(rec, self.keep))
                for r, rec in zip(out, records)]

    def _tag(self, chunk: Chunk, tag_many: Callable[[list[Document], TagOptions], list[Any]],
             records: list[Any] | None = None) -> list[Any]:
        """Each record's outcome from ``tag_many`` (TagResults or JSON lines), or its Reject, in
        input order. ``records``, if given, receives each record's own fields (parsed once, see
        :func:`tagger.readers.parse_record`)."""
        if records is None:
            items: list[Any] = [
                to_document(chunk.kind, chunk.source, line, data, default_id, self.fields)
                for line, data, default_id in zip(chunk.lines, chunk.data, chunk.ids)
            ]
        else:
            items = []
            for line, data, default_id in zip(chunk.lines, chunk.data, chunk.ids):
                rec, doc = parse_record(chunk.kind, chunk.source, line, data, default_id, self.fields)
                records.append(rec)
                items.append(doc)
        docs = [(i, d) for i, d in enumerate(items) if isinstance(d, Document)]
        try:
            tagged: list[Any] = tag_many([d for _, d in docs], self.options)
        except InvalidDocumentError:
            tagged = [self._one(tag_many, d, chunk.source, chunk.lines[i]) for i, d in docs]
        for (i, _), r in zip(docs, tagged):
            items[i] = r
        return items

    def _one(self, tag_many: Callable[[list[Document], TagOptions], list[Any]], doc: Document, source: str,
             line: int | None) -> Any:
        try:
            return tag_many([doc], self.options)[0]
        except InvalidDocumentError as e:
            n = len(doc.title) + len(doc.body)
            return Reject(source, line, doc.id, "too_long" if n > self.tagger.max_chars else "empty_text", str(e))

    def __call__(self, chunk: Chunk) -> tuple[bytes, bytes, int, int]:
        """(output lines, reject lines, n tagged, n rejected) for one chunk, as UTF-8 bytes."""
        out: list[str] = []
        rej: list[str] = []
        for r in self.lines(chunk):
            if isinstance(r, Reject):
                rej.append(json.dumps(r.to_json(), ensure_ascii=False))
            else:
                out.append(r)
        # JSON input may carry lone surrogates ("\\ud800"), which UTF-8 cannot hold: written back as
        # the same JSON escape, the line stays valid and says what the input said.
        return (
            ("\n".join(out) + "\n").encode("utf-8", "backslashreplace") if out else b"",
            ("\n".join(rej) + "\n").encode("utf-8", "backslashreplace") if rej else b"",
            len(out),
            len(rej),
        )


# Worker processes hold one ChunkTagger, built once by the pool initializer (the model is loaded
# once per worker, not per chunk).
_WORKER: ChunkTagger | None = None


def _init_worker(
    model_dir: str | None, tagger: Tagger | None, max_chars: int, on_too_long: str, options: TagOptions, fields: Fields,
    keep: tuple[str, ...] = (),
) -> None:
    """Pool initializer. A forked worker is handed the parent's Tagger (fork copies memory, nothing
    is pickled); a spawned one loads the model from ``model_dir``, verified as usual."""
    global _WORKER
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the main process
    if tagger is None:
        assert model_dir is not None
        tagger = Tagger(load_model(Path(model_dir)), max_chars=max_chars, on_too_long=on_too_long)
    _WORKER = ChunkTagger(tagger, options, fields, keep)


def _work(chunk: Chunk) -> tuple[bytes, bytes, int, int]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(chunk)


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the main process dies, even by kill -9, so a
    killed run leaves no orphans holding CPU."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


# ------------------------------------------------------------------------------- the run
def run_identity(specs: Sequence[InputSpec], loaded: LoadedModel, cfg: BatchConfig) -> dict[str, Any]:
    """What a resumed run must share with the run it continues: inputs, model and every setting
    that changes output lines."""
    return {
        "inputs": [input_fingerprint(s) for s in specs],
        "model": {"version": loaded.version, "sha256": loaded.manifest.get("sha256")},
        "settings": {
            "fields": asdict(cfg.fields),
            "options": asdict(cfg.options) | {"topics": list(cfg.options.topics)},
            "max_chars": cfg.max_chars,
            "on_too_long": cfg.on_too_long,
        } | ({"keep": list(cfg.keep)} if cfg.keep else {}),  # absent when empty: older checkpoints still match
    }


def _check_paths(cfg: BatchConfig, specs: Sequence[InputSpec]) -> None:
    outs = {cfg.output.resolve(), cfg.rejects_path.resolve(), cfg.checkpoint_path.resolve()}
    if len(outs) != 3:
        raise BatchError("the output, rejects and checkpoint paths must differ")
    for s in specs:
        if s.path != "-" and Path(s.path).resolve() in outs:
            raise BatchError(f"{s.path} is both an input and an output")
    if cfg.resume and any(s.path == "-" for s in specs):
        raise BatchError("--resume cannot be used with stdin input")


def _positions(
    specs: Sequence[InputSpec], start: Position, chunk_size: int
) -> Iterator[tuple[Chunk | None, Position]]:
    """Chunks from the resume position on, each with where reading continues after it. An input's
    end yields (None, start of the next input) so a checkpoint can move past it."""
    for i in range(start.input, len(specs)):
        offset, line = (start.offset, start.line) if i == start.input else (0, 0)
        for chunk in iter_chunks(specs[i], i, start=offset, start_line=line, size=chunk_size):
            yield chunk, Position(i, chunk.end, chunk.end_line)
        yield None, Position(i + 1, 0, 0)


def run_batch(cfg: BatchConfig, loaded: LoadedModel | None = None, log: Callable[[str], None] | None = None) -> BatchStats:
    """Tag every record of ``cfg.inputs`` into ``cfg.output`` (or its rejects file); see the module doc."""
    if cfg.n_process < 1:
        raise BatchError("--n-process must be >= 1")
    if cfg.chunk_size < 1:
        raise BatchError("the chunk size must be >= 1")
    try:
        cfg = replace(cfg, keep=check_keep(cfg.keep))
    except ValueError as e:
        raise BatchError(f"--keep: {e}") from e
    try:
        specs = resolve_inputs(list(cfg.inputs), cfg.input_format)
        for s in specs:
            check_csv_columns(s, cfg.fields)
    except InputError as e:
        raise BatchError(str(e)) from e
    _check_paths(cfg, specs)
    if loaded is None:
        loaded = load_model(cfg.model or default_model_root())
    tagger = Tagger(loaded, max_chars=cfg.max_chars, on_too_long=cfg.on_too_long)
    try:
        cfg.options.validate(tagger.topics)
    except ValueError as e:
        raise BatchError(str(e)) from e

    try:
        sink = OutputSink.open(
            cfg.output, cfg.rejects_path, cfg.checkpoint_path, run_identity(specs, loaded, cfg),
            resume=cfg.resume, force=cfg.force, names=[s.source for s in specs],
        )
    except SinkError as e:
        raise BatchError(str(e)) from e
    if len(sink.state.names) == len(specs):
        # The identity matched (same files, however spelled): name them as the run being continued did,
        # so its reject lines do not mix ``in.jsonl`` and ``/data/in.jsonl``.
        specs = [replace(s, name=n) for s, n in zip(specs, sink.state.names)]
    with sink:
        if sink.state.complete:
            c = sink.state.counts
            stats = BatchStats(c.read, c.tagged, c.rejected, already_complete=True)
            if log is not None:
                log(stats.summary(cfg.rejects_path))
            return stats
        done_before = sink.state.counts.read
        t0 = time.perf_counter()
        bar = _progress(cfg.progress, initial=done_before)
        try:
            work = _pipeline(cfg, tagger, loaded, _positions(specs, sink.state.next, cfg.chunk_size))
            last_checkpoint = time.monotonic()
            for result, position in work:
                if result is None:
                    sink.write(b"", b"", position, 0, 0)
                else:
                    out, rej, n_ok, n_bad = result
                    sink.write(out, rej, position, n_ok, n_bad)
                    if bar is not None:
                        bar.update(n_ok + n_bad)
                        if n_bad:
                            bar.set_postfix(rejected=sink.state.counts.rejected, refresh=False)
                if time.monotonic() - last_checkpoint >= cfg.checkpoint_seconds:
                    sink.checkpoint()
                    last_checkpoint = time.monotonic()
            sink.checkpoint(complete=True)
        except InputError as e:
            # An input that stops being readable part-way (a truncated .gz): what came before it is
            # written and checkpointed, and the message names the input.
            sink.checkpoint()
            c = sink.state.counts
            raise BatchError(f"{e} (the {c.read:,} records read before it are written: {c.tagged:,} tagged, "
                             f"{c.rejected:,} rejected)") from e
        except BaseException:
            # Ctrl-C or an error: keep what was written in order, so --resume continues from here.
            try:
                sink.checkpoint()
            except OSError:
                pass
            raise
        finally:
            if bar is not None:
                bar.close()
        c = sink.state.counts
        stats = BatchStats(c.read, c.tagged, c.rejected, time.perf_counter() - t0, c.read - done_before)
    if log is not None:
        log(stats.summary(cfg.rejects_path))
    return stats


def _pipeline(
    cfg: BatchConfig, tagger: Tagger, loaded: LoadedModel, chunks: Iterator[tuple[Chunk | None, Position]]
) -> Iterator[tuple[tuple[bytes, bytes, int, int] | None, Position]]:
    """Chunk results in input order: inline for one process, else from a pool with a bounded
    number of chunks in flight (so a fast reader cannot fill memory ahead of slow workers)."""
    if cfg.n_process == 1:
        worker = ChunkTagger(tagger, cfg.options, cfg.fields, cfg.keep)
        for chunk, position in chunks:
            yield (worker(chunk) if chunk is not None else None), position
        return
    # fork starts a worker in milliseconds with the model already in memory, but forking a process
    # that runs other threads (a SparkSession's py4j, gRPC) can deadlock the child: spawn then.
    settings = (tagger.max_chars, tagger.on_too_long, cfg.options, cfg.fields, cfg.keep)
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        ctx, init = mp.get_context("fork"), (None, tagger, *settings)
    else:
        ctx, init = mp.get_context("spawn"), (str(loaded.path), None, *settings)
    with ctx.Pool(cfg.n_process, initializer=_init_worker, initargs=init) as pool:
        pending: deque[tuple[Any, Position]] = deque()
        limit = 3 * cfg.n_process
        broken: InputError | None = None
        try:
            for chunk, position in chunks:
                pending.append((pool.apply_async(_work, (chunk,)) if chunk is not None else None, position))
                while len(pending) >= limit:
                    fut, pos = pending.popleft()
                    yield (fut.get() if fut is not None else None), pos
        except InputError as e:
            # An input broke part-way: the chunks already in flight were read before the break, so
            # they are written (below) before the run stops.
            broken = e
        while pending:
            fut, pos = pending.popleft()
            yield (fut.get() if fut is not None else None), pos
        if broken is not None:
            raise broken


def _progress(enabled: bool, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        initial=initial, unit=" docs", unit_scale=True, file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
        smoothing=0.1, desc="tagging",
    )
