"""The `tagger` command: one app, one module per subcommand (each has ``register`` and ``run``)."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import NoReturn

# Subcommand modules are imported only when their command runs, so `tagger tag` never pays for
# grpc or scikit-learn's training stack.
COMMANDS = {
    "tag": "Tag documents (raw pages, JSON/JSONL) with the model",
    "train": "Train a model from the corpus and gold articles and publish it",
    "evaluate": "Score the model (and the keyword rules) on a gold file",
    "info": "Show the model's manifest",
    "serve": "Run the gRPC tagging service",
    "retrain": "Retrain with new data and promote only if not worse",
    "spark-tag": "Tag a parquet/JSONL dataset on Spark",
    "split-by-date": "Split JSONL articles at a publication date",
    "sign-model": "Sign a model version's manifest (ed25519) for serve --model-public-key",
    "review": "The editors' review loop: web app, queue import, decisions export",
}


class CLIError(Exception):
    """An error reported to the user as one line and exit code 2."""


def _module(name: str):
    return importlib.import_module(f"tagger.cli.{name.replace('-', '_')}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the CLI's error format: a usage error is one line on stderr,
    ``tagger tag: error: argument --threshold: invalid float value: 'abc'``, and exit code 2 (not
    the usage block; ``--help`` still shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1 (``--top-k``): 0 would silently keep nothing."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from tagger import __version__

    parser = ArgumentParser(prog="tagger", description="Arabic-first news topic tagging.")
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # subparsers are ArgumentParser too
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            try:
                _module(name).register(p)
            except ModuleNotFoundError as e:
                if e.name != f"tagger.cli.{name.replace('-', '_')}":
                    raise
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # blamed on the command they were given to, as its other errors are
        prog = f"tagger {args.command}" if args.command else "tagger"
        parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extra)}\n")
    if not args.command:
        parser.print_help()
        return 2
    try:
        code = int(_module(args.command).run(args) or 0)
        flush_stdout()  # a full disk shows here as an error, not as a traceback at exit
        return code
    except CLIError as e:
        print(f"tagger {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tagger {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`tagger tag … | head`): not an error. Point stdout at /dev/null so the
        # interpreter's own flush at exit does not complain about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


@contextlib.contextmanager
def stdout_errors() -> Iterator[None]:
    """Writes to stdout inside: an error other than a closed pipe (which ``main`` treats as the reader
    leaving) becomes a CLIError about stdout, not about whichever input was being read."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise CLIError(f"cannot write to standard output: {e.strerror or e}") from e


def emit(text: str = "") -> None:
    """``print(text)`` for a command's results (see :func:`stdout_errors`)."""
    with stdout_errors():
        print(text)


def flush_stdout() -> None:
    """Flush stdout (see :func:`stdout_errors`)."""
    with stdout_errors():
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
