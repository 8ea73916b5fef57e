"""`tagger tag FILE… | -`: tag raw pages or JSON/JSONL documents, one JSON object per document out."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tagger.cli import CLIError
from tagger.cli._common import add_model_option, load
from tagger.document import Document, from_fields, parse_page
from tagger.tagger import InvalidDocumentError, TagOptions, Tagger


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="raw scraped pages (.txt), .json (object or list) or .jsonl files; '-' reads stdin")
    add_model_option(p)
    p.add_argument("--explain", action="store_true", help="add the n-grams behind each chosen topic")
    p.add_argument("--threshold", type=float, default=None, help="one threshold for every topic (0-1)")
    p.add_argument("--top-k", type=int, default=None, help="keep at most k topics per document")


def _json_docs(obj: object, where: str) -> Iterator[Document]:
    items = obj if isinstance(obj, list) else [obj]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise CLIError(f"{where}: item {i} is not a JSON object")
        try:
            yield from_fields(
                id=str(item.get("id", f"{where}#{i}")), title=item.get("title") or "", text=item.get("text") or "",
                raw=item.get("raw") or "", tags=item.get("tags") or (),
            )
        except (TypeError, ValueError) as e:
            raise CLIError(f"{where}: item {i}: {e}") from e


def read_documents(name: str) -> Iterator[Document]:
    """Documents from one named input: JSONL/JSON by suffix or content, else a raw page."""
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as e:
        raise CLIError(f"{name}: {e.strerror}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CLIError(f"{name}: invalid UTF-8 at byte {e.start}") from e
    label = "stdin" if name == "-" else Path(name).name
    stripped = text.lstrip()
    if name.endswith(".jsonl") or (stripped.startswith("{") and not name.endswith(".json") and "\n{" in stripped):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CLIError(f"{label}:{n}: invalid JSON ({e.msg})") from e
                yield from _json_docs(obj, f"{label}:{n}")
    elif name.endswith(".json") or stripped.startswith(("{", "[")):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise CLIError(f"{label}: invalid JSON ({e.msg})") from e
        yield from _json_docs(obj, label)
    else:
        yield parse_page(text, id=label)


def run(args: argparse.Namespace) -> int:
    tagger = Tagger(load(args))
    options = TagOptions(threshold=args.threshold, top_k=args.top_k, explain=args.explain)
    try:
        options.validate(tagger.topics)
    except ValueError as e:
        raise CLIError(str(e)) from e
    out = sys.stdout
    for name in args.files:
        for doc in read_documents(name):
            try:
                result = tagger.tag(doc, options)
            except InvalidDocumentError as e:
                raise CLIError(str(e)) from e
            out.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
    out.flush()
    return 0
