"""Streaming readers shared by training, evaluation and batch tagging: plain, .gz or .xz JSONL."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["open_text", "read_jsonl", "InputError"]


class InputError(ValueError):
    """Bad input data; the message names the file and line."""


def open_text(path: Path | str, mode: str = "rt") -> IO[str]:
    """Open a text file, decompressing by suffix. Decoding is strict: bad UTF-8 raises."""
    path = Path(path)
    opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix, open)
    return opener(path, mode, encoding="utf-8", errors="strict")  # type: ignore[operator]


def read_jsonl(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; raise InputError naming the bad line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    with open_text(path) as f:
        line_no = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{line_no + 1}: invalid UTF-8 ({e.reason})") from e
            if not line:
                return
            line_no += 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{line_no}: invalid JSON ({e.msg})") from e
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
            yield line_no, obj
