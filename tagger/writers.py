"""Batch outputs: the tagged JSONL, the rejects file and the checkpoint that makes a run resumable.

Crash safety (kill -9 at any moment loses and duplicates nothing) comes from one ordering rule:
output and rejects are written in input order, and the checkpoint, which records how many bytes of
each file are good and where to resume reading, is replaced atomically only after both files are
fsync'd. Lines written after the last checkpoint may exist on disk; a resumed run truncates the files
back to the checkpointed sizes and reads again from the checkpointed position, so each of those
records is written exactly once more.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["Position", "Counts", "Checkpoint", "OutputSink", "SinkError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = 1


class SinkError(RuntimeError):
    """The output cannot be started or resumed (exists without --force, checkpoint mismatch ...)."""


@dataclass(frozen=True)
class Position:
    """Where reading resumes: input number, position inside it (byte offset or item index), line."""

    input: int = 0
    offset: int = 0
    line: int = 0


@dataclass
class Counts:
    read: int = 0
    tagged: int = 0
    rejected: int = 0


@dataclass
class Checkpoint:
    identity: dict[str, Any]
    next: Position = field(default_factory=Position)
    output_bytes: int = 0
    rejects_bytes: int = 0
    counts: Counts = field(default_factory=Counts)
    complete: bool = False
    #: The inputs as the run that started the output named them (reject lines' ``source``). A resumed
    #: run names them the same way however its own command line spells them, so its bytes match.
    names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "complete": self.complete,
            "next": {"input": self.next.input, "offset": self.next.offset, "line": self.next.line},
            "output_bytes": self.output_bytes,
            "rejects_bytes": self.rejects_bytes,
            "counts": {"read": self.counts.read, "tagged": self.counts.tagged, "rejected": self.counts.rejected},
            "identity": self.identity,
            "names": list(self.names),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            data = json.loads(path.read_text("utf-8"))
            if data.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"unknown checkpoint format {data.get('format')!r}")
            return cls(
                identity=data["identity"],
                next=Position(**data["next"]),
                output_bytes=int(data["output_bytes"]),
                rejects_bytes=int(data["rejects_bytes"]),
                counts=Counts(**data["counts"]),
                complete=bool(data["complete"]),
                names=tuple(str(n) for n in data.get("names", ())),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SinkError(f"cannot read checkpoint {path}: {e}") from e


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not every platform/filesystem lets a directory be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class OutputSink:
    """Appends whole chunks of output and reject lines and keeps the checkpoint in step with them."""

    def __init__(self, output: Path, rejects: Path, checkpoint_path: Path, state: Checkpoint) -> None:
        self.output, self.rejects, self.checkpoint_path, self.state = output, rejects, checkpoint_path, state
        # Unbuffered: one write() per chunk, and nothing can sit in a user-space buffer at a checkpoint.
        self._out = open(output, "r+b", buffering=0)
        self._rej = open(rejects, "r+b", buffering=0)
        for f, size in ((self._out, state.output_bytes), (self._rej, state.rejects_bytes)):
            f.truncate(size)
            f.seek(size)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls, output: Path, rejects: Path, checkpoint_path: Path, identity: dict[str, Any], *, resume: bool, force: bool,
        names: Sequence[str] = (),
    ) -> OutputSink:
        """Start a run (refusing to overwrite without ``force``) or resume one from its checkpoint.
        ``names`` are the inputs as this run names them; a resumed run keeps the names its checkpoint
        recorded (``state.names``)."""
        if resume:
            if checkpoint_path.exists():
                return cls._resume(output, rejects, checkpoint_path, identity)
            # Nothing to resume: start afresh, but never over lines some other run wrote.
            for p in (output, rejects):
                if p.exists() and p.stat().st_size > 0 and not force:
                    raise SinkError(
                        f"cannot resume: {p} exists but there is no checkpoint ({checkpoint_path.name}); "
                        f"use --force to start over"
                    )
        elif not force:
            existing = [p for p in (output, rejects, checkpoint_path) if p.exists()]
            if existing:
                raise SinkError(
                    f"{existing[0]} exists; use --force to overwrite it or --resume to continue that run"
                )
        output.parent.mkdir(parents=True, exist_ok=True)
        rejects.parent.mkdir(parents=True, exist_ok=True)
        for p in (output, rejects):
            with open(p, "wb"):
                pass
        sink = cls(output, rejects, checkpoint_path, Checkpoint(identity=identity, names=tuple(names)))
        sink.checkpoint()  # from here on the run is resumable, even if killed before its first chunk
        return sink

    @classmethod
    def _resume(cls, output: Path, rejects: Path, checkpoint_path: Path, identity: dict[str, Any]) -> OutputSink:
        state = Checkpoint.load(checkpoint_path)
        diff = _first_difference(state.identity, identity)
        if diff:
            raise SinkError(f"cannot resume: {diff} differs from the checkpointed run ({checkpoint_path})")
        for p, size in ((output, state.output_bytes), (rejects, state.rejects_bytes)):
            actual = p.stat().st_size if p.exists() else -1
            if actual < size:
                raise SinkError(
                    f"cannot resume: {p} has {max(actual, 0)} bytes, fewer than the {size} its checkpoint "
                    f"records (was it modified?); use --force to start over"
                )
        return cls(output, rejects, checkpoint_path, state)

    # ------------------------------------------------------------------ writing
    def write(self, out: bytes, rejected: bytes, position: Position, n_tagged: int, n_rejected: int) -> None:
        """Append one chunk's lines (in input order) and note where reading continues after it."""
        for f, data in ((self._out, out), (self._rej, rejected)):
            view = memoryview(data)
            while view:
                view = view[f.write(view):]
        st = self.state
        c = st.counts
        # One assignment publishes the new state: a Ctrl-C between bytecodes can never leave a
        # checkpoint whose byte counts and read position disagree.
        self.state = replace(
            st, next=position, output_bytes=st.output_bytes + len(out), rejects_bytes=st.rejects_bytes + len(rejected),
            counts=Counts(c.read + n_tagged + n_rejected, c.tagged + n_tagged, c.rejected + n_rejected),
        )

    def checkpoint(self, complete: bool = False) -> None:
        """Make everything written so far durable, then record it (atomic replace of the checkpoint)."""
        state = replace(self.state, complete=complete)
        os.fsync(self._out.fileno())
        os.fsync(self._rej.fileno())
        tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state.to_json(), f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.checkpoint_path)
        except BaseException:
            # A full disk (or Ctrl-C) mid-write: the previous checkpoint stays the valid one, and no
            # empty or half-written temporary file is left beside it.
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.checkpoint_path.parent)
        self.state = state

    def close(self) -> None:
        self._out.close()
        self._rej.close()

    def __enter__(self) -> OutputSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    """A readable path to the first place two JSON-like values differ, or None if they are equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            d = _first_difference(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            d = _first_difference(a, b, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if old == new else (where or "the run")
