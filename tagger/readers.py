"""Input readers for `tagger tag`: JSONL (plain/.gz/.xz/.bz2), JSON, CSV/TSV and raw pages.

Reading is split in two so batch tagging can stream, resume and run in parallel:

- :func:`iter_chunks` runs in the main process and only cuts the input into records (a JSONL line's
  bytes, a CSV row, a page file's bytes), each with the position just past it, so a killed run can
  restart at any record boundary;
- :func:`to_document` runs wherever the tagging runs (a worker process) and turns one record into a
  :class:`~tagger.document.Document` or a :class:`Reject` saying why it cannot be tagged.

Every record becomes exactly one Document or one Reject: nothing is skipped silently (blank JSONL
lines are not records).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from tagger.document import Document, from_fields, parse_page
from tagger.io import COMPRESSED_OPENERS, READ_ERRORS, InputError, JSONProblem, cannot_read, loads_json

__all__ = [
    "Fields", "InputSpec", "Chunk", "Reject", "InputError", "FORMATS", "REJECT_REASONS",
    "resolve_inputs", "iter_chunks", "to_document", "parse_record", "input_fingerprint", "read_stdin_spec", "check_csv_columns",
    "detect_format", "sniff",
]

#: Input formats; ``auto`` picks one from the path (see :func:`detect_format`).
FORMATS: Final = ("jsonl", "json", "csv", "tsv", "page")

#: Why a record was not tagged (the ``reason`` of a reject line).
REJECT_REASONS: Final = (
    "invalid_utf8",  # bytes that are not UTF-8
    "invalid_json",  # a JSONL line that does not parse
    "not_an_object",  # a JSON value that is not an object
    "invalid_csv",  # a CSV row the parser refused, or with the wrong number of fields
    "missing_text",  # no text, raw page or title field
    "empty_text",  # the text is empty or only whitespace, or nothing is left once page parts are cut
    "invalid_field",  # a field of the wrong type (a number where text belongs, a tag that is not a string)
    "too_long",  # longer than --max-chars
    "invalid_document",  # anything else the document builder refuses (both text and raw, ...)
)

_SUFFIX_FORMAT: Final = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".txt": "page",
}
_TAG_SPLIT: Final = re.compile(r"[,،|]")
_SNIFF_BYTES: Final = 1 << 16
_BOM: Final = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Fields:
    """Which fields of a JSON object or CSV row hold the document's parts."""

    id: str = "id"
    title: str = "title"
    text: str = "text"
    raw: str = "raw"  # a whole scraped page, parsed like a .txt page (title, tag line, read-also ...)
    tags: str = "tags"


@dataclass(frozen=True)
class InputSpec:
    """One input: a file (``path``), stdin (``"-"``), or for ``page`` inputs a directory of pages."""

    path: str
    format: str
    is_dir: bool = False
    name: str | None = None  # how reject lines name the input, if not as ``path`` (a resumed run's first spelling)

    @property
    def label(self) -> str:
        """Short name used in default ids."""
        return "stdin" if self.path == "-" else Path(self.path).name

    @property
    def source(self) -> str:
        """The input as named in reject lines and error messages."""
        return self.name if self.name is not None else "stdin" if self.path == "-" else self.path


@dataclass
class Chunk:
    """Consecutive records of one input, in order, plus where to resume after the last of them."""

    input_index: int
    # "json" (a JSONL line's bytes), "item" (a parsed JSON value), "csv" (header and row), "page" (bytes);
    # a record already known to be unusable (a line torn by a damaged input) is a (reason, detail) pair.
    kind: str
    source: str  # the input path, as given
    lines: list[int | None] = field(default_factory=list)  # where each record starts (None for a page)
    data: list[Any] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # default ids, for records without an id field
    end: int = 0  # position just past the last record: byte offset, or item/file index
    end_line: int = 0  # lines consumed up to ``end``


@dataclass(frozen=True)
class Reject:
    """A record that was not tagged, and why; one line of the rejects file."""

    source: str
    line: int | None
    id: str | None
    reason: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "id": self.id, "reason": self.reason, "detail": self.detail}

    def where(self) -> str:
        """``source:line`` for messages."""
        return self.source if self.line is None else f"{self.source}:{self.line}"


# --------------------------------------------------------------------------------- inputs
def detect_format(path: str, forced: str | None = None) -> str:
    """The input's format: ``forced`` if given, else by suffix (after a compression suffix); a
    directory holds pages. Files with another suffix are sniffed like stdin (see :func:`sniff`)."""
    if forced and forced != "auto":
        if forced not in FORMATS:
            raise InputError(f"unknown input format {forced!r}; use one of {', '.join(FORMATS)}")
        return forced
    if path == "-":
        return "auto"
    p = Path(path)
    if p.is_dir():
        return "page"
    suffixes = [s.lower() for s in p.suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSED_OPENERS:
        suffixes = suffixes[:-1]
    fmt = _SUFFIX_FORMAT.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        with _open_binary(path) as f:
            fmt = sniff(f.read(_SNIFF_BYTES))
    return fmt


def sniff(head: bytes) -> str:
    """Guess a format from the first bytes: JSON lines, one JSON value, or else a raw page."""
    stripped = head.lstrip()
    if stripped.startswith(b"{") and b"\n{" in stripped:
        return "jsonl"
    if stripped.startswith((b"{", b"[")):
        return "json"
    return "page"


def resolve_inputs(paths: list[str], forced: str | None = None) -> list[InputSpec]:
    """Check that every input exists and fix its format; raise InputError naming the first bad one."""
    specs = []
    for path in paths:
        if path != "-" and not os.path.exists(path):
            raise InputError(f"{path}: No such file or directory")
        if path != "-" and not (os.path.isfile(path) or os.path.isdir(path)):
            raise InputError(f"{path}: not a file or directory")
        is_dir = path != "-" and os.path.isdir(path)
        try:
            fmt = detect_format(path, forced)
        except READ_ERRORS as e:
            raise InputError(cannot_read(path, e)) from e
        if fmt == "auto":  # stdin read as a stream: sniff what is already buffered
            fmt = _sniff_stream(_peek_stdin())
        if is_dir and fmt != "page":
            raise InputError(f"{path}: a directory is read as raw pages (*.txt), not as {fmt}")
        if is_dir and next(_walk_pages(path), None) is None:
            raise InputError(f"{path}: no pages (*.txt files) in this directory")
        specs.append(InputSpec(path=path, format=fmt, is_dir=is_dir))
    return specs


def _peek_stdin() -> bytes:
    buffer = sys.stdin.buffer
    peek = getattr(buffer, "peek", None)
    return peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if peek is not None else b""


def _sniff_stream(head: bytes) -> str:
    """:func:`sniff` on the first buffered bytes of a stream (a few KB, maybe inside the first line).
    An object with no line break in sight is read as JSON lines: for one object on one line that is
    the same record, and it keeps a long first line from turning a JSONL stream into one JSON value."""
    stripped = head.strip()
    if stripped.startswith(b"{") and b"\n" not in stripped:
        return "jsonl"
    return sniff(head)


def read_stdin_spec(data: bytes, forced: str | None = None) -> tuple[InputSpec, bytes]:
    """stdin, once read whole (the positional ``-``): its format from ``forced`` or the content."""
    fmt = forced if forced and forced != "auto" else sniff(data[:_SNIFF_BYTES])
    return InputSpec(path="-", format=fmt), data


def input_fingerprint(spec: InputSpec) -> dict[str, Any]:
    """What identifies an input's content cheaply (path, size, mtime; a directory's page list), so a
    resumed run can refuse inputs that changed since its checkpoint."""
    if spec.path == "-":
        return {"path": "-"}
    if spec.is_dir:
        h = hashlib.sha256()
        n = 0
        for rel, full in _walk_pages(spec.path):
            st = os.stat(full)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
            n += 1
        return {"path": os.path.abspath(spec.path), "format": spec.format, "pages": n, "sha256": h.hexdigest()}
    st = os.stat(spec.path)
    return {"path": os.path.abspath(spec.path), "format": spec.format, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _open_binary(path: str) -> IO[bytes]:
    opener = COMPRESSED_OPENERS.get(Path(path).suffix.lower())
    return opener(path, "rb") if opener else open(path, "rb", buffering=1 << 20)  # type: ignore[operator]


def _walk_pages(root: str) -> Iterator[tuple[str, str]]:
    """(relative path, full path) of every *.txt page under root, in a fixed order (sorted names,
    depth first), one directory listing in memory at a time. Hidden files and folders are skipped."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        full_dir = os.path.join(root, rel_dir) if rel_dir else root
        with os.scandir(full_dir) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        subdirs = []
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.is_dir(follow_symlinks=False):  # a linked folder could lead back up: pages twice, or forever
                subdirs.append(rel)
            elif e.is_file() and e.name.lower().endswith(".txt"):
                yield rel, e.path
        stack.extend(reversed(subdirs))


# -------------------------------------------------------------------------------- chunking
def iter_chunks(
    spec: InputSpec, input_index: int, *, start: int = 0, start_line: int = 0, size: int = 256,
    stdin_data: bytes | None = None,
) -> Iterator[Chunk]:
    """Cut one input into chunks of at most ``size`` records, from position ``start`` (a byte
    offset for JSONL/CSV, an item index for JSON, a file index for a page directory).

    A file that cannot be read on (a truncated or corrupt .gz/.xz, a disk error) raises InputError
    naming it: the chunks before it were whole records and stay valid."""
    try:
        if spec.format == "jsonl":
            yield from _jsonl_chunks(spec, input_index, start, start_line, size, stdin_data)
        elif spec.format in ("csv", "tsv"):
            yield from _csv_chunks(spec, input_index, start, start_line, size, stdin_data)
        elif spec.format == "json":
            yield from _json_chunks(spec, input_index, start, size, stdin_data)
        elif spec.format == "page":
            yield from _page_chunks(spec, input_index, start, size, stdin_data)
        else:
            raise InputError(f"{spec.path}: unknown format {spec.format!r}")
    except READ_ERRORS as e:
        raise InputError(cannot_read(spec.source, e)) from e


class _EndOnError(io.RawIOBase):
    """A readable stream that ends where reading ``f`` fails (keeping the error in ``error``) rather
    than raising: a buffered reader over it then hands out every byte decoded before the failure."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__()
        # read1: at most one step of the decompressor, so a failing step cannot take down bytes that
        # earlier steps decoded in the same call (a plain read(n) loops until n and loses them).
        self._read = getattr(f, "read1", None) or f.read
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.error is not None:
            return 0
        try:
            data = self._read(len(buffer))
        except READ_ERRORS as e:
            self.error = e
            return 0
        buffer[: len(data)] = data
        return len(data)


def _binary_source(spec: InputSpec, stdin_data: bytes | None, start: int) -> IO[bytes]:
    if spec.path == "-":
        if stdin_data is not None:
            f: IO[bytes] = io.BytesIO(stdin_data)
        else:
            f = sys.stdin.buffer
        if start:
            raise InputError("stdin cannot be resumed")
        return f
    f = _open_binary(spec.path)
    if start:
        f.seek(start)  # compressed files seek by decompressing up to the offset
    return f


def _jsonl_chunks(spec, input_index, start, start_line, size, stdin_data) -> Iterator[Chunk]:
    label = spec.label
    f = _binary_source(spec, stdin_data, start)
    try:
        lines = _LineReader(f, start, start_line)
        chunk = Chunk(input_index, "json", spec.source)
        for raw in lines:
            if lines.pos == len(raw) and raw.startswith(_BOM):
                raw = raw[len(_BOM):]  # a byte-order mark is not part of the first record
            if raw.isspace():
                continue  # a blank line is not a record
            if lines.torn:  # the part of a line read before the input broke: rejected, saying so
                raw = ("invalid_json", lines.torn_detail())
            chunk.lines.append(lines.line)
            chunk.data.append(raw)
            chunk.ids.append(f"{label}:{lines.line}")
            if len(chunk.data) >= size:
                chunk.end, chunk.end_line = lines.pos, lines.line
                yield chunk
                chunk = Chunk(input_index, "json", spec.source)
        chunk.end, chunk.end_line = lines.pos, lines.line
        yield chunk  # possibly empty: it still carries the input's end position
        lines.raise_error(spec.source)  # after the records read before the break, never instead of them
    finally:
        if f is not sys.stdin.buffer:
            f.close()


class _LineReader:
    """The lines of a binary stream, split on ``b"\\n"`` only (each keeps its ``b"\\n"``; the last may
    lack it), counting the bytes and lines consumed so a record's end is known.

    A read that fails part-way (a truncated or corrupt .gz/.xz/.bz2, a disk error) loses nothing
    decoded before it: the stream is read as if it ended there, so iteration yields every line up
    to the failure, including a torn last one (a file object's readline would drop that), then
    stops with the error kept in ``error``; the caller hands on its records, then calls
    :meth:`raise_error`.
    """

    _BLOCK: Final = 1 << 16

    def __init__(self, f: IO[bytes], pos: int, line: int) -> None:
        self.f, self.pos, self.line = f, pos, line
        self._guard = _EndOnError(f)
        self._ended = True  # whether the last line yielded had its line end

    @property
    def error(self) -> BaseException | None:
        return self._guard.error

    def __iter__(self) -> Iterator[bytes]:
        for raw in io.BufferedReader(self._guard, self._BLOCK):  # C readline; the guard never raises
            self.pos += len(raw)
            self.line += 1
            self._ended = raw.endswith(b"\n")
            yield raw

    def text(self) -> Iterator[str]:
        """The lines decoded for the csv module. Undecodable bytes survive as surrogates
        (surrogateescape) and their row is rejected later."""
        for raw in self:
            yield raw.decode("utf-8", "surrogateescape")

    @property
    def torn(self) -> bool:
        """Whether the line just yielded is the start of a line the input broke in (not a record
        that ends there: a whole file may end without a line end)."""
        return self.error is not None and not self._ended

    def torn_detail(self) -> str:
        """What a reject of the torn line says."""
        return f"the line is cut short: {cannot_read('the input', self.error)}"  # type: ignore[arg-type]

    def raise_error(self, source: str) -> None:
        """If reading broke, raise InputError naming the line it broke in (the torn one, else the next)."""
        if self.error is not None:
            where = self.line if not self._ended else self.line + 1
            raise InputError(cannot_read(f"{source}:{where}", self.error)) from self.error


def _csv_header(spec: InputSpec, stdin_data: bytes | None) -> tuple[list[str], int, int]:
    f = _binary_source(spec, stdin_data, 0)
    try:
        lines = _LineReader(f, 0, 0)
        try:
            header = next(csv.reader(lines.text(), delimiter="\t" if spec.format == "tsv" else ","))
        except StopIteration:
            lines.raise_error(spec.source)
            return [], lines.pos, lines.line
        except csv.Error as e:
            raise InputError(f"{spec.path}: unreadable CSV header ({e})") from e
        if lines.error is not None:  # the header itself was cut short
            lines.raise_error(spec.source)
        if header:
            header[0] = header[0].removeprefix("\ufeff")  # a UTF-8 byte-order mark (Excel)
        return header, lines.pos, lines.line
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def _csv_chunks(spec, input_index, start, start_line, size, stdin_data) -> Iterator[Chunk]:
    if spec.path == "-" and stdin_data is None:
        raise InputError("CSV from stdin: save it to a file first")  # the header is read twice
    header, header_end, header_lines = _csv_header(spec, stdin_data)
    if start < header_end:
        start, start_line = header_end, header_lines
    f = _binary_source(spec, stdin_data, 0)
    f.seek(start)
    csv.field_size_limit(sys.maxsize)  # length is judged by --max-chars, with a clear reject reason
    try:
        lines = _LineReader(f, start, start_line)
        reader = csv.reader(lines.text(), delimiter="\t" if spec.format == "tsv" else ",")
        chunk = Chunk(input_index, "csv", spec.source)
        while True:
            first = lines.line + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                row = e  # rejected in to_document, with the parser's message
            if isinstance(row, list) and not any(row):
                continue  # a blank line is not a record
            if lines.torn:
                row = ("invalid_csv", lines.torn_detail())
            chunk.lines.append(first)
            chunk.data.append(row if isinstance(row, (csv.Error, tuple)) else (header, row))
            chunk.ids.append(f"{spec.label}:{first}")
            if len(chunk.data) >= size:
                chunk.end, chunk.end_line = lines.pos, lines.line
                yield chunk
                chunk = Chunk(input_index, "csv", spec.source)
        chunk.end, chunk.end_line = lines.pos, lines.line
        yield chunk
        lines.raise_error(spec.source)
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def _read_all(spec, stdin_data) -> bytes:
    """A whole input's bytes (for formats that cannot be streamed); stdin is never closed."""
    f = _binary_source(spec, stdin_data, 0)
    try:
        return f.read()
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def _json_chunks(spec, input_index, start, size, stdin_data) -> Iterator[Chunk]:
    """A .json file holds one object or a list of them; it is parsed whole (not streamed)."""
    raw = _read_all(spec, stdin_data)
    label = spec.label
    try:
        value = loads_json(raw.decode("utf-8-sig"))
        items = value if isinstance(value, list) else [value]
        problem = None
    except UnicodeDecodeError as e:
        items, problem = [None], ("invalid_utf8", f"invalid UTF-8 at byte {e.start}")
    except JSONProblem as e:
        items, problem = [None], ("invalid_json", f"invalid JSON ({e})")
    chunk = Chunk(input_index, "item", spec.source)
    for i in range(start, len(items)):
        chunk.lines.append(None)
        chunk.data.append(problem or items[i])
        chunk.ids.append(f"{label}#{i}")
        if len(chunk.data) >= size:
            chunk.end = i + 1
            yield chunk
            chunk = Chunk(input_index, "item", spec.source)
    chunk.end = len(items)
    yield chunk


def _page_chunks(spec, input_index, start, size, stdin_data) -> Iterator[Chunk]:
    if not spec.is_dir:
        if start:
            return
        data = _read_all(spec, stdin_data)
        yield Chunk(input_index, "page", spec.source, [None], [data], [spec.label], end=1)
        return
    chunk = Chunk(input_index, "page", spec.source)
    i = -1
    for i, (rel, full) in enumerate(_walk_pages(spec.path)):
        if i < start:
            continue
        with open(full, "rb") as f:
            chunk.data.append(f.read())
        chunk.lines.append(None)
        chunk.ids.append(rel)
        if len(chunk.data) >= size:
            chunk.end = i + 1
            yield chunk
            chunk = Chunk(input_index, "page", spec.source)
    chunk.end = max(i + 1, start)
    yield chunk


# ------------------------------------------------------------------------ record → Document
def to_document(
    kind: str, source: str, line: int | None, data: Any, default_id: str, fields: Fields
) -> Document | Reject:
    """One record as a Document, or a Reject naming the record and the reason."""
    return parse_record(kind, source, line, data, default_id, fields)[1]


def parse_record(
    kind: str, source: str, line: int | None, data: Any, default_id: str, fields: Fields
) -> tuple[Mapping[str, Any] | None, Document | Reject]:
    """One record as (its fields, its Document or Reject): :func:`to_document` plus the record's own
    fields as read, parsed once — a JSON object, a CSV row as a dict, a page as ``{fields.raw: page}``
    — or None when the record is not readable as fields (bad bytes, bad JSON, a JSON value that is not
    an object). What ``tagger tag --keep`` copies into output lines and what review import reads."""
    if kind == "json":
        if isinstance(data, tuple):  # (reason, detail): a line the reader already found unusable
            return None, Reject(source, line, None, data[0], data[1])
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, Reject(source, line, None, "invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line")
        try:
            obj = loads_json(text)
        except JSONProblem as e:
            return None, Reject(source, line, None, "invalid_json", f"invalid JSON ({e})")
        return (obj if isinstance(obj, Mapping) else None), _from_mapping(obj, source, line, default_id, fields)
    doc = _to_document(kind, source, line, data, default_id, fields)
    if kind == "item":
        return (data if isinstance(data, Mapping) else None), doc
    if kind == "csv" and not isinstance(data, csv.Error) and not isinstance(data[0], str) and not (
            isinstance(doc, Reject) and doc.reason in ("invalid_csv", "invalid_utf8")):
        return dict(zip(*data)), doc
    if kind == "page" and isinstance(doc, Document):
        return {fields.raw: data.decode("utf-8-sig")}, doc
    return None, doc


def _to_document(
    kind: str, source: str, line: int | None, data: Any, default_id: str, fields: Fields
) -> Document | Reject:
    """:func:`to_document` for the kinds other than JSONL lines."""
    if kind == "item":
        if isinstance(data, tuple):  # the whole .json file failed to decode or parse
            return Reject(source, line, None, data[0], data[1])
        return _from_mapping(data, source, line, default_id, fields)
    if kind == "csv":
        if isinstance(data, csv.Error):
            return Reject(source, line, None, "invalid_csv", f"unreadable CSV row ({data})")
        if isinstance(data[0], str):  # (reason, detail): a row the reader already found unusable
            return Reject(source, line, None, data[0], data[1])
        header, row = data
        if len(row) != len(header):
            return Reject(source, line, None, "invalid_csv", f"expected {len(header)} fields, got {len(row)}")
        for value in row:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a surrogate left by surrogateescape: the bytes were not UTF-8
                return Reject(source, line, None, "invalid_utf8", "invalid UTF-8 in the row")
        return _from_mapping(dict(zip(header, row)), source, line, default_id, fields)
    if kind == "page":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            return Reject(source, line, default_id, "invalid_utf8", f"invalid UTF-8 at byte {e.start}")
        if not text.strip():
            return Reject(source, line, default_id, "empty_text", f"page {default_id!r} has no text to tag (empty)")
        return parse_page(text, id=default_id)
    raise ValueError(f"unknown record kind {kind!r}")


def _from_mapping(obj: Any, source: str, line: int | None, default_id: str, fields: Fields) -> Document | Reject:
    if not isinstance(obj, Mapping):
        return Reject(source, line, None, "not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    rid = obj.get(fields.id)
    if rid is None or rid == "":
        doc_id = default_id
    elif isinstance(rid, (str, int)) and not isinstance(rid, bool):
        doc_id = str(rid)
    else:
        return Reject(source, line, None, "invalid_field", f"field {fields.id!r} must be a string or an integer, "
                      f"got {type(rid).__name__}")
    text, raw, title = obj.get(fields.text), obj.get(fields.raw), obj.get(fields.title)
    for name, value in ((fields.text, text), (fields.raw, raw), (fields.title, title)):
        if value is not None and not isinstance(value, str):
            return Reject(source, line, doc_id, "invalid_field", f"field {name!r} must be a string, got {type(value).__name__}")
    # A headline alone is taggable (as it is over gRPC): only a record with no text at all is refused.
    if text is None and raw is None and title is None:
        return Reject(source, line, doc_id, "missing_text",
                      f"document {doc_id!r} has no {fields.text!r}, {fields.raw!r} or {fields.title!r} field")
    if not any(v and not v.isspace() for v in (text, raw, title)):
        return Reject(source, line, doc_id, "empty_text", f"document {doc_id!r} has no text to tag (all empty)")
    tags = obj.get(fields.tags)
    if tags is None:
        tags = ()
    elif isinstance(tags, str):
        tags = [t.strip() for t in _TAG_SPLIT.split(tags) if t.strip()]
    elif not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return Reject(source, line, doc_id, "invalid_field", f"field {fields.tags!r} must be a list of strings or a string")
    try:
        return from_fields(id=doc_id, title=title or "", text=text or "", raw=raw or "", tags=tags)
    except (TypeError, ValueError) as e:
        return Reject(source, line, doc_id, "invalid_document", str(e))


def check_csv_columns(spec: InputSpec, fields: Fields, stdin_data: bytes | None = None) -> None:
    """Fail early, once, when a CSV has no text column: a wrong --text-field is not a per-row problem."""
    if spec.format not in ("csv", "tsv"):
        return
    if spec.path == "-" and stdin_data is None:
        raise InputError("CSV from stdin: save it to a file first")  # a stream cannot be read twice (header)
    header, _, _ = _csv_header(spec, stdin_data)
    if header and fields.text not in header and fields.raw not in header:
        raise InputError(
            f"{spec.path}: no {fields.text!r} column (columns: {', '.join(header)}); choose one with --text-field"
        )
