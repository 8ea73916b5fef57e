"""Streaming readers shared by training, evaluation and batch tagging: plain, .gz or .xz JSONL."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "open_text", "read_jsonl", "loads_json", "cannot_read", "JSONProblem", "READ_ERRORS", "COMPRESSED_OPENERS",
    "InputError",
]

#: How a file is opened by its (lower-cased) suffix; any other suffix is plain text.
COMPRESSED_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}

#: What reading a damaged file raises: truncated or corrupt .gz/.xz/.bz2 streams, disk errors.
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


class InputError(ValueError):
    """Bad input data, or an input that cannot be read at all; the message names the file (and line)."""


def cannot_read(where: str, e: BaseException) -> str:
    """The message for a read that failed part-way: a disk or permission error says what it is; a
    damaged compressed stream gets the hint that the file is truncated or corrupt."""
    damaged = not isinstance(e, OSError) or isinstance(e, gzip.BadGzipFile)
    return f"{where}: cannot read ({e}){': is the file truncated or corrupt?' if damaged else ''}"


class JSONProblem(ValueError):
    """A text that is not a usable JSON value; the message says why in a few words."""


def loads_json(text: str) -> Any:
    """``json.loads`` with every way a text can fail reported as one :class:`JSONProblem`.

    Besides syntax errors, valid JSON can still be refused: an integer longer than Python's digit
    limit (ValueError) or nesting deeper than the recursion limit (RecursionError). Callers turn a
    JSONProblem into a reject or an error naming the record, so no input can crash a run.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}" if e.lineno > 1 else f"column {e.colno}"
        # Some of json's messages end in "at" already ("Invalid control character at"): one "at" only.
        raise JSONProblem(f"{e.msg.removesuffix(' at')} at {where}") from None
    except RecursionError:
        raise JSONProblem("nested too deeply") from None
    except ValueError as e:  # e.g. an integer beyond sys.get_int_max_str_digits()
        raise JSONProblem(str(e)) from None


def open_text(path: Path | str, mode: str = "rt") -> IO[str]:
    """Open a text file, decompressing by suffix. Decoding is strict: bad UTF-8 raises."""
    path = Path(path)
    opener = COMPRESSED_OPENERS.get(path.suffix.lower(), open)
    # Reading as utf-8-sig: a byte-order mark some editors put at the start is not part of the first
    # record. (Writing as utf-8-sig would add one.)
    encoding = "utf-8-sig" if "r" in mode else "utf-8"
    return opener(path, mode, encoding=encoding, errors="strict")  # type: ignore[operator]


def read_jsonl(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; raise InputError naming the bad line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    line_no = 0
    try:
        f = open_text(path)
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror or e})") from e
    with f:
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{line_no + 1}: invalid UTF-8 ({e.reason})") from e
            except READ_ERRORS as e:
                raise InputError(cannot_read(f"{path}:{line_no + 1}", e)) from e
            if not line:
                return
            line_no += 1
            if not line.strip():
                continue
            try:
                obj = loads_json(line)
            except JSONProblem as e:
                raise InputError(f"{path}:{line_no}: invalid JSON ({e})") from e
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
            yield line_no, obj
