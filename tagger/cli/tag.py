"""`tagger tag`: tag raw pages, JSON/JSONL or CSV documents with the model.

Two modes over the same readers (:mod:`tagger.readers`) and the same predict path:

- ``tagger tag FILE… | -`` prints one JSON object per document to stdout and stops at the first
  document it cannot tag (interactive use, pipes);
- ``tagger tag --input PATH… --output OUT`` is the batch mode (:mod:`tagger.batch`): every record
  ends as a line of OUT or of the rejects file, with parallel workers, progress, a summary and
  ``--resume``. Positional FILEs and ``--input`` PATHs are the same thing; ``--output`` picks the mode.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tagger.cli import CLIError, flush_stdout, positive_int, stdout_errors
from tagger.cli._common import add_model_option, load
from tagger.readers import (
    FORMATS,
    Fields,
    InputError,
    Reject,
    check_csv_columns,
    iter_chunks,
    read_stdin_spec,
    resolve_inputs,
)
from tagger.tagger import DEFAULT_MAX_CHARS, Tagger, TagOptions


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="inputs: raw scraped pages (.txt), .json (object or list), .jsonl[.gz|.xz|.bz2], .csv/.tsv, "
                        "a directory of .txt pages; '-' reads stdin")
    add_model_option(p)
    p.add_argument("--explain", action="store_true", help="add the n-grams behind each chosen topic")
    p.add_argument("--threshold", type=float, default=None, help="one threshold for every topic (0-1)")
    p.add_argument("--top-k", type=positive_int, default=None, help="keep at most k topics per document (k >= 1)")
    p.add_argument("--keep", default="", metavar="FIELD,...",
                   help="input fields copied as they are into each output line, before its own keys, e.g. "
                        "--keep title,text,url (what `tagger review import` needs to queue batch output; "
                        "a page's whole text is its 'raw' field; a field a record lacks is null)")

    src = p.add_argument_group("input")
    src.add_argument("--input", "-i", dest="inputs", nargs="+", action="extend", default=[], metavar="PATH",
                     help="more inputs, as FILE")
    src.add_argument("--format", choices=("auto", *FORMATS), default="auto",
                     help="input format (default: from the suffix; a directory holds pages; stdin is sniffed)")
    src.add_argument("--id-field", default="id", help="JSON/CSV field with the document id (default: id; "
                     "missing ids become <file>:<line>)")
    src.add_argument("--title-field", default="title", help="field with the headline (default: title)")
    src.add_argument("--text-field", default="text", help="field with the article text (default: text)")
    src.add_argument("--raw-field", default="raw", help="field with a whole scraped page, parsed like a .txt page "
                     "(default: raw)")
    src.add_argument("--tags-field", default="tags", help="field with the site's own tags, reported as dropped "
                     "(a list, or a string split on , ، |; default: tags)")
    src.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS,
                     help=f"longest title+text tagged (default: {DEFAULT_MAX_CHARS:,})")
    src.add_argument("--on-too-long", choices=("reject", "truncate"), default=None,
                     help="longer documents are rejected (default with --output) or truncated and flagged "
                          "(default without)")

    batch = p.add_argument_group("batch mode (with --output)")
    batch.add_argument("--output", "-o", type=Path, default=None,
                       help="write JSON lines here (and rejects beside it) instead of to stdout")
    batch.add_argument("--rejects", type=Path, default=None,
                       help="where records that cannot be tagged go (default: OUTPUT.rejects.jsonl)")
    batch.add_argument("--n-process", "-j", type=int, default=1,
                       help="worker processes (default: 1; 0 = one per CPU)")
    batch.add_argument("--resume", action="store_true",
                       help="continue a killed or interrupted run from its checkpoint (OUTPUT.checkpoint.json)")
    batch.add_argument("--force", action="store_true", help="overwrite an existing output")
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    batch.add_argument("--chunk-size", type=int, default=256, help=argparse.SUPPRESS)
    batch.add_argument("--checkpoint-seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    _register_server_option(p)


def run(args: argparse.Namespace) -> int:
    inputs = [*args.files, *args.inputs]
    if not inputs:
        raise CLIError("nothing to tag: give FILEs ('-' for stdin), or --input PATH… --output OUT")
    if args.max_chars < 1:
        raise CLIError("--max-chars must be >= 1")
    if args.server:  # gRPC client mode, see the block at the end of this file
        return _run_remote(args, inputs)
    if args.output is None:
        used = [flag for flag, on in (("--resume", args.resume), ("--force", args.force),
                                      ("--rejects", args.rejects is not None), ("--n-process", args.n_process != 1))
                if on]
        if used:
            raise CLIError(f"{used[0]} needs --output (batch mode)")
        return _to_stdout(args, inputs)
    return _to_output(args, inputs)


def _fields(args: argparse.Namespace) -> Fields:
    return Fields(id=args.id_field, title=args.title_field, text=args.text_field, raw=args.raw_field,
                  tags=args.tags_field)


def _keep(args: argparse.Namespace) -> tuple[str, ...]:
    from tagger.kept import check_keep

    try:
        return check_keep(n.strip() for n in args.keep.split(",") if n.strip())
    except ValueError as e:
        raise CLIError(f"--keep: {e}") from e


def _options(args: argparse.Namespace, tagger: Tagger) -> TagOptions:
    options = TagOptions(threshold=args.threshold, top_k=args.top_k, explain=args.explain)
    try:
        options.validate(tagger.topics)
    except ValueError as e:
        raise CLIError(str(e)) from e
    return options


def _to_stdout(args: argparse.Namespace, inputs: list[str]) -> int:
    """Print each document's result as it is tagged; the first one that cannot be tagged is an error."""
    from tagger.batch import ChunkTagger

    tagger = Tagger(load(args), max_chars=args.max_chars, on_too_long=args.on_too_long or "truncate")
    return _print_results(ChunkTagger(tagger, _options(args, tagger), _fields(args), _keep(args)), args, inputs)


def _print_results(worker, args: argparse.Namespace, inputs: list[str]) -> int:
    """The stdout loop shared by local and ``--server`` tagging: read, tag in chunks, print in order."""
    fmt = None if args.format == "auto" else args.format
    buffer = getattr(sys.stdout, "buffer", None)

    def write(lines: list[str]) -> None:
        """One chunk's lines in one write. Lone surrogates from JSON escapes cannot be UTF-8: they are
        kept as the escape they came in as."""
        text = "".join(line + "\n" for line in lines)
        with stdout_errors():  # not the input's fault: say so before the input handler below sees it
            if buffer is not None:
                buffer.write(text.encode("utf-8", "backslashreplace"))
            else:
                sys.stdout.write(text)

    for name in inputs:
        data = None
        try:
            if name == "-":
                spec, data = read_stdin_spec(sys.stdin.buffer.read(), fmt)
            else:
                [spec] = resolve_inputs([name], fmt)
            check_csv_columns(spec, worker.fields, data)
            for chunk in iter_chunks(spec, 0, size=64, stdin_data=data):
                results = worker.lines(chunk)
                bad = next((r for r in results if isinstance(r, Reject)), None)
                write(results if bad is None else results[:results.index(bad)])
                if bad is not None:  # the lines before it are out; the first record that cannot be tagged stops
                    flush_stdout()
                    raise CLIError(f"{bad.where()}: {bad.detail}")
        except InputError as e:
            raise CLIError(str(e)) from e
        except BrokenPipeError:
            raise
        except OSError as e:
            raise CLIError(f"{name}: {e.strerror or e}") from e
    flush_stdout()
    return 0


def _to_output(args: argparse.Namespace, inputs: list[str]) -> int:
    """Batch mode: see :mod:`tagger.batch`."""
    from tagger.batch import BatchConfig, BatchError, run_batch

    loaded = load(args)
    tagger = Tagger(loaded, max_chars=args.max_chars, on_too_long=args.on_too_long or "reject")
    cfg = BatchConfig(
        inputs=tuple(inputs),
        output=args.output,
        rejects=args.rejects,
        fields=_fields(args),
        input_format=None if args.format == "auto" else args.format,
        options=_options(args, tagger),
        keep=_keep(args),
        max_chars=args.max_chars,
        on_too_long=tagger.on_too_long,
        n_process=args.n_process if args.n_process > 0 else (os.cpu_count() or 1),
        chunk_size=args.chunk_size,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet and sys.stderr.isatty(),
        checkpoint_seconds=args.checkpoint_seconds,
    )
    try:
        run_batch(cfg, loaded, log=None if args.quiet else lambda msg: print(msg, file=sys.stderr))
    except BatchError as e:
        raise CLIError(str(e)) from e
    except OSError as e:
        raise CLIError(f"{e.filename or args.output}: {e.strerror or e}") from e
    return 0


# --- gRPC client mode (issue #3): `--server HOST:PORT` tags with a running `tagger serve` ----------------
def _register_server_option(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server mode (with --server)")
    g.add_argument("--server", metavar="HOST:PORT", default=None,
                   help="send the documents to a running `tagger serve` instead of loading a model here "
                        "(stdout mode; the server's --max-chars/--on-too-long apply); also dns:///NAME:PORT")
    g.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="deadline of each call to the server, retries included (default: 30); a server that "
                        "refuses the connection fails at once")
    g.add_argument("--tls-ca", type=Path, default=None, metavar="PEM",
                   help="connect with TLS, trusting this CA (the one that signed the server's certificate)")
    g.add_argument("--tls", action="store_true", help="connect with TLS, trusting the system's CAs")
    g.add_argument("--tls-cert", type=Path, default=None, metavar="PEM",
                   help="client certificate, for a server that asks for one (mutual TLS; with --tls-key)")
    g.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="private key of --tls-cert")
    g.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="file holding the bearer token to send (default: the TAGGER_TOKEN environment variable)")


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is None:
        return os.environ.get("TAGGER_TOKEN") or None
    try:
        token = args.token_file.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise CLIError(f"--token-file {args.token_file}: {e.strerror or e}") from e
    if not token or any(c.isspace() for c in token):
        raise CLIError(f"--token-file {args.token_file}: expected one token (no spaces) in the file")
    return token


def _run_remote(args: argparse.Namespace, inputs: list[str]) -> int:
    """_to_stdout's loop with the server's model (tagger.client.RemoteTagger has Tagger's interface)."""
    import grpc

    from tagger.batch import ChunkTagger
    from tagger.client import RemoteTagger, TaggerClient

    if args.output is not None or args.model is not None:
        raise CLIError("--server tags to stdout with the server's model; it cannot be combined with --output or --model")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CLIError("--tls-cert and --tls-key go together")
    if not args.timeout > 0:
        raise CLIError("--timeout must be > 0")
    try:
        client = TaggerClient(args.server, timeout=args.timeout, tls=args.tls, tls_ca=args.tls_ca,
                              tls_cert=args.tls_cert, tls_key=args.tls_key, token=_token(args))
    except OSError as e:
        raise CLIError(f"{e.filename}: {e.strerror or e}") from e
    try:
        with client:
            client.check_connection(timeout=args.timeout)
            remote = RemoteTagger(client)
            worker = ChunkTagger(remote, _options(args, remote), _fields(args), _keep(args))  # type: ignore[arg-type]
            return _print_results(worker, args, inputs)
    except ConnectionError as e:
        raise CLIError(str(e)) from e
    except grpc.RpcError as e:
        raise CLIError(f"server {args.server}: {e.code().name}: {e.details()}") from e
