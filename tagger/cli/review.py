"""`tagger review`: the editors' review loop — serve the web app, add users, import documents into the
queue, export decisions as training data (docs/review.md)."""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from tagger.cli import CLIError, emit
from tagger.cli._common import add_model_option, load

DEFAULT_DB = "review.db"

EPILOG = """\
The store is a SQLite file by default (--db review.db) or PostgreSQL by URL
(--db postgresql://user:pass@host/db); the schema is created or upgraded (Alembic) on first use.

examples:
  tagger review add-user amal --role editor            # prompts for a password, prints an API token
  tagger review import --db review.db articles.jsonl   # tag with the current model and queue
  tagger tag -i day.jsonl -o day.tags.jsonl --keep title,text,url && tagger review import day.tags.jsonl
  tagger review serve --db review.db --port 8080
  tagger review export --db review.db --output reviewed.jsonl && tagger retrain --dry-run --new reviewed.jsonl
"""


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                   help=f"review database: a SQLite file path or postgresql://… URL (default: {DEFAULT_DB})")


def register(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    sub = p.add_subparsers(dest="review_command", metavar="SUBCOMMAND")

    s = sub.add_parser("serve", help="run the review web app and JSON API")
    _db(s)
    add_model_option(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 = any free port, see the ready: line)")
    s.add_argument("--tls-cert", type=Path, default=None, help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--tls-key", type=Path, default=None, help="private key of --tls-cert (PEM)")
    s.add_argument("--behind-proxy", metavar="IPS", default=None,
                   help="trust X-Forwarded-For/Proto from these proxy addresses (comma-separated), e.g. 127.0.0.1; "
                        "session cookies are then marked Secure")
    s.add_argument("--lease-seconds", type=int, default=600, help="how long an item stays with its editor (default: 600)")

    u = sub.add_parser("add-user", help="create an editor or admin account; prints its API token once")
    _db(u)
    u.add_argument("name")
    u.add_argument("--role", choices=("editor", "admin"), default="editor")
    u.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input (default: prompt when interactive; "
                        "without either the account can use the API token only)")

    i = sub.add_parser("import", help="queue documents: articles (tagged here) or batch output (made with "
                       "`tagger tag --keep title,text`, or joined to its input with --join)")
    _db(i)
    add_model_option(i)
    i.add_argument("files", nargs="+", metavar="FILE", help="JSONL/JSON/CSV/TSV articles, .txt pages or a folder of them, "
                   "or `tagger tag --output` files")
    i.add_argument("--join", action="append", default=[], metavar="INPUT",
                   help="the input files a batch output made without --keep was made from; its lines take their "
                        "article by id from here")
    i.add_argument("--rejects", type=Path, default=None, help="write rejected records here as JSONL")
    i.add_argument("--workers", "-j", type=int, default=0,
                   help="worker processes that read and prepare records while this one writes to the database "
                        "(default: 0, all in this process)")
    for name in ("id", "title", "text", "raw", "tags"):
        i.add_argument(f"--{name}-field", default=name, help=f"field with the document's {name} (default: {name})")

    e = sub.add_parser("export", help="write decisions as JSONL for `tagger retrain --new`")
    _db(e)
    e.add_argument("--output", "-o", type=Path, required=True, help="JSONL file to write")
    e.add_argument("--since", default=None, help="only decisions made at or after this UTC date/time (ISO)")


def run(args: argparse.Namespace) -> int:
    from tagger.review.store import StoreError

    command = getattr(args, "review_command", None)
    if command is None:
        raise CLIError("give a subcommand: serve, add-user, import or export (tagger review --help)")
    try:
        return {"serve": _serve, "add-user": _add_user, "import": _import, "export": _export}[command](args)
    except StoreError as e:
        raise CLIError(str(e)) from e


def _store(args: argparse.Namespace, topics=None, **kw):
    from sqlalchemy.exc import OperationalError

    from tagger.review.store import Store

    try:
        return Store(args.db, topics=topics, **kw)
    except OperationalError as e:
        raise CLIError(f"cannot open the review database {args.db}: {e.orig}") from e


def _add_user(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CLIError("--password-stdin: the first line of standard input is empty")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise CLIError("the passwords differ")
    else:
        password = None
    with _store(args) as store:
        token = store.add_user(args.name, args.role, password)
    emit(token)
    print(f"user {args.name!r} ({args.role}) created{'' if password else ' (API token only, no password)'}; "
          "the line above is its API token, shown this once", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from tagger.io import InputError
    from tagger.readers import Fields
    from tagger.review.importer import import_files

    if args.workers < 0:
        raise CLIError("--workers must be >= 0")
    loaded = load(args)
    fields = Fields(id=args.id_field, title=args.title_field, text=args.text_field, raw=args.raw_field,
                    tags=args.tags_field)
    with _store(args, topics=loaded.model.topics) as store:
        try:
            stats = import_files(store, loaded, args.files, join=args.join, fields=fields, workers=args.workers)
        except InputError as e:
            raise CLIError(str(e)) from e
    if args.rejects is not None:
        with open(args.rejects, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in stats.rejects)
    for r in stats.rejects[:5]:
        print(f"rejected {r.where()}: {r.detail}", file=sys.stderr)
    if stats.rejected > 5:
        print(f"... and {stats.rejected - 5:,} more{'' if args.rejects else ' (write them all with --rejects FILE)'}",
              file=sys.stderr)
    print(stats.summary(), file=sys.stderr)
    return 1 if stats.rejected else 0


def _export(args: argparse.Namespace) -> int:
    from tagger.review.export import export_rows, parse_since, write_jsonl

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as e:
        raise CLIError(str(e)) from e
    with _store(args) as store:
        rows = export_rows(store, since)
    try:
        write_jsonl(rows, args.output)
    except OSError as e:
        raise CLIError(f"{args.output}: {e.strerror or e}") from e
    print(f"wrote {len(rows):,} reviewed articles to {args.output}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tagger.review.app import ServeOptions, serve

    if (args.tls_cert is None) != (args.tls_key is None):
        raise CLIError("--tls-cert and --tls-key go together")
    if not 0 <= args.port <= 65535:
        raise CLIError("--port must be in 0-65535")
    if args.lease_seconds < 10:
        raise CLIError("--lease-seconds must be at least 10")
    loaded = load(args)
    store = _store(args, topics=loaded.model.topics, lease_seconds=args.lease_seconds)
    options = ServeOptions(host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
                           proxy_ips=args.behind_proxy)
    try:
        return serve(store, loaded, options)
    except OSError as e:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from e
    finally:
        store.close()
