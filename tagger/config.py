"""Typed server settings in one place: defaults < ``TAGGER_*`` environment < command-line flags.

Every setting is a field of :class:`ServeConfig` with its flag, environment variable and help in the
field's metadata, so ``tagger serve --help``, the environment and the code cannot drift apart.
"""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["ENV_PREFIX", "ConfigError", "ServeConfig", "add_arguments", "default_workers", "from_args"]

ENV_PREFIX = "TAGGER_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the flag or environment variable."""


def default_workers() -> int:
    """One worker per core, at most 2: tokenisation is pure Python, so processes (not threads) scale."""
    return max(1, min(2, os.cpu_count() or 1))


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def _opt(help: str, parse: Callable[[str], Any] = str, *, env: str = "", metavar: str | None = None,
         choices: tuple[str, ...] | None = None, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    meta = {"help": help, "parse": parse, "env": env, "metavar": metavar, "choices": choices}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``tagger serve``; the field name gives the flag (--max-batch) and env var (TAGGER_MAX_BATCH)."""

    host: str = _opt("address to listen on ('[::]' = all interfaces, IPv4 and IPv6)", default="[::]")
    port: int = _opt("gRPC port (0 = any free port, printed at start-up)", int, default=50051)
    workers: int = _opt("server processes sharing the port (SO_REUSEPORT); default: min(2, CPU cores)", int,
                        default_factory=default_workers)
    threads: int = _opt("RPC threads per worker process", int, default=16)
    model: Path | None = _opt(
        "model folder (newest version is served and new versions are hot-reloaded) or one version folder "
        "(pinned, no reload); default: models/arabic-news-topics", Path, env="TAGGER_MODEL", default=None)
    reload_interval: float = _opt("seconds between checks for a new model version (0 = never reload)", float,
                                  default=2.0)
    grace: float = _opt("seconds in-flight RPCs get to finish after SIGTERM/SIGINT", float, default=10.0)
    max_message_mb: float = _opt("largest request or response message in MB (gRPC's own default is 4)", float,
                                 default=64.0)
    max_batch: int = _opt("most documents in one TagBatch request (more = INVALID_ARGUMENT)", int, default=1000)
    max_chars: int = _opt("most title+body characters scored per document", int, default=100_000)
    on_too_long: str = _opt("what happens to a document over --max-chars: 'truncate' (score its start, "
                            "flag truncated=true in the response) or 'reject' (INVALID_ARGUMENT)",
                            choices=("truncate", "reject"), default="truncate")
    max_concurrent_rpcs: int = _opt("RPCs in progress per worker before new ones get RESOURCE_EXHAUSTED "
                                    "(0 = unlimited)", int, default=256)
    max_streams: int = _opt("TagStreams open at once per worker before new ones get RESOURCE_EXHAUSTED; an open "
                            "stream holds an RPC thread even while idle, so this stays below --threads and the "
                            "rest answer Tag, TagBatch and health checks (0 = half of --threads)", int, default=0)
    stream_idle_timeout: float = _opt("seconds a TagStream may wait for its client's next message before the "
                                      "server cancels it and frees its thread (0 = never)", float, default=60.0)
    metrics_port: int = _opt("Prometheus /metrics HTTP port (0 = no metrics endpoint)", int, default=9100)
    metrics_host: str = _opt("address the metrics endpoint listens on", default="0.0.0.0")
    reflection: bool = _opt("serve gRPC server reflection (--no-reflection turns it off)", _bool, default=True)
    review_db: str | None = _opt("review store (SQLite path or postgresql:// URL, see `tagger review`): a sample of "
                                 "served documents is queued there for editors, off the RPC path (default: none)",
                                 default=None, metavar="URL")
    review_sample: float = _opt("share of served documents queued for review when --review-db is set (0-1)", float,
                                default=0.01)
    log_level: str = _opt("logging level", str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                          default="INFO")

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)

    @property
    def stream_limit(self) -> int:
        """Streams allowed at once: --max-streams, or half the threads (at least one), kept under
        --max-concurrent-rpcs."""
        if self.max_streams:
            return self.max_streams
        cap = self.max_concurrent_rpcs - 1 if self.max_concurrent_rpcs else self.threads
        return max(1, min(self.threads // 2, cap))

    def validate(self) -> ServeConfig:
        """Return self, or raise ConfigError naming the first out-of-range setting."""
        # Lazily evaluated, in order: a later check may rely on an earlier one (max_message_bytes of an
        # infinite --max-message-mb would raise instead of failing its check).
        u32 = 2**32 - 1  # the ServerLimits message carries these as uint32
        checks: list[tuple[Callable[[], bool], str, str]] = [
            (lambda: 0 <= self.port <= 65535, "port", "must be in 0..65535"),
            (lambda: self.workers >= 1, "workers", "must be >= 1"),
            (lambda: self.threads >= 2, "threads", "must be >= 2 (one open stream must not take the only thread)"),
            (lambda: math.isfinite(self.reload_interval) and self.reload_interval >= 0, "reload_interval",
             "must be a number >= 0"),
            (lambda: math.isfinite(self.grace) and self.grace >= 0, "grace", "must be a number >= 0"),
            (lambda: math.isfinite(self.max_message_mb) and self.max_message_mb > 0, "max_message_mb",
             "must be a number > 0"),
            (lambda: self.max_message_bytes < 2**31, "max_message_mb", "must be under 2048 (gRPC's limit is 2 GB)"),
            (lambda: 1 <= self.max_batch <= u32, "max_batch", f"must be in 1..{u32}"),
            (lambda: 1 <= self.max_chars <= u32, "max_chars", f"must be in 1..{u32}"),
            (lambda: self.max_concurrent_rpcs >= 0, "max_concurrent_rpcs", "must be >= 0"),
            (lambda: 0 <= self.max_streams < self.threads, "max_streams",
             f"must be in 0..{self.threads - 1} (below --threads, so a thread is always left for other calls)"),
            (lambda: math.isfinite(self.stream_idle_timeout) and self.stream_idle_timeout >= 0, "stream_idle_timeout",
             "must be a number >= 0"),
            (lambda: 0 <= self.metrics_port <= 65535, "metrics_port", "must be in 0..65535"),
            (lambda: math.isfinite(self.review_sample) and 0 <= self.review_sample <= 1, "review_sample",
             "must be a number in 0..1"),
        ]
        for ok, name, problem in checks:
            if not ok():
                raise ConfigError(f"{_flag(name)} / {_env(name)} {problem}, got {getattr(self, name)!r}")
        return self

    def with_overrides(self, **changes: Any) -> ServeConfig:
        return replace(self, **changes).validate()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    f = next(f for f in fields(ServeConfig) if f.name == name)
    return f.metadata["env"] or ENV_PREFIX + name.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting. Flags default to None so :func:`from_args` can tell "not given"."""
    defaults = ServeConfig()
    for f in fields(ServeConfig):
        meta = f.metadata
        default = getattr(defaults, f.name)
        shown = "models/arabic-news-topics" if f.name == "model" else default
        help_text = f"{meta['help']} [env {_env(f.name)}; default {shown}]"
        if meta["parse"] is _bool:
            parser.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(_flag(f.name), dest=f.name, default=None, metavar=meta["metavar"] or f.name.upper(),
                                type=meta["parse"], choices=meta["choices"], help=help_text)


def from_args(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> ServeConfig:
    """Resolve every setting: a given flag wins over its environment variable, which wins over the default."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(ServeConfig):
        flag_value = getattr(args, f.name, None) if args is not None else None
        if flag_value is not None:
            values[f.name] = flag_value
            continue
        env_name = _env(f.name)
        raw = environ.get(env_name)
        if raw is None or raw == "":
            continue
        try:
            value = f.metadata["parse"](raw)
        except ValueError as e:
            raise ConfigError(f"environment variable {env_name}={raw!r} is invalid: {e}") from e
        choices = f.metadata["choices"]
        if choices and value not in choices:
            raise ConfigError(f"environment variable {env_name}={raw!r} must be one of {', '.join(choices)}")
        values[f.name] = value
    return ServeConfig(**values).validate()
