"""Typed settings in one place: defaults < ``TAGGER_*`` environment < command-line flags.

Every setting is a field of a settings class with its help, parser and choices in the field's
metadata; its flag (``--max-chars``) and environment variable (``TAGGER_MAX_CHARS``) follow from the
field's name. :class:`Settings` holds what every command shares (which model, how long a document
may be); :class:`ServeConfig` adds the server's. The CLI turns fields into flags
(:func:`tagger.cli._common.add_settings_arguments`), so ``--help``, the environment and the code
cannot drift apart, and each default is written once.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from tagger.paths import default_model_root

__all__ = ["ENV_PREFIX", "ConfigError", "Settings", "ServeConfig", "DEFAULT_MAX_CHARS", "default_workers",
           "env_name", "flag_name", "from_args", "setting_fields"]

#: Longest title+text scored as is (longer text is truncated and flagged, or rejected).
DEFAULT_MAX_CHARS = 100_000

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


def _opt(help: str, parse: Callable[[str], Any] = str, *, metavar: str | None = None,
         choices: tuple[str, ...] | None = None, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    meta = {"help": help, "parse": parse, "metavar": metavar, "choices": choices}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """What every command that tags shares; the field name gives the flag (--model) and env var (TAGGER_MODEL)."""

    model: Path | None = _opt(
        "model: a version folder (pinned), or a model folder whose newest version is used (and, when serving, "
        "hot-reloaded); default: the shipped arabic-news-topics model", Path, metavar="PATH", default=None)
    max_chars: int = _opt("most title+text characters scored per document", int, default=DEFAULT_MAX_CHARS)

    @property
    def model_path(self) -> Path:
        """The model folder to load: the ``model`` setting, else the shipped default."""
        return self.model if self.model is not None else default_model_root()

    def _checks(self) -> list[tuple[Callable[[], bool], str, str]]:
        u32 = 2**32 - 1  # the ServerLimits message carries max_chars as uint32
        return [(lambda: 1 <= self.max_chars <= u32, "max_chars", f"must be in 1..{u32}")]

    def validate(self: _S) -> _S:
        """Return self, or raise ConfigError naming the first out-of-range setting."""
        # Lazily evaluated, in order: a later check may rely on an earlier one (max_message_bytes of an
        # infinite --max-message-mb would raise instead of failing its check).
        for ok, name, problem in self._checks():
            if not ok():
                raise ConfigError(f"{flag_name(name)} / {env_name(name)} {problem}, got {getattr(self, name)!r}")
        return self

    def with_overrides(self: _S, **changes: Any) -> _S:
        return replace(self, **changes).validate()


_S = TypeVar("_S", bound=Settings)


@dataclass(frozen=True)
class ServeConfig(Settings):
    """Settings of ``tagger serve``: the shared ones plus the server's own."""

    host: str = _opt("address to listen on ('[::]' = all interfaces, IPv4 and IPv6)", default="[::]")
    port: int = _opt("gRPC port (0 = any free port, printed at start-up)", int, default=50051)
    workers: int = _opt("server processes sharing the port (SO_REUSEPORT); default: min(2, CPU cores)", int,
                        default_factory=default_workers)
    threads: int = _opt("RPC threads per worker process", int, default=16)
    reload_interval: float = _opt("seconds between checks for a new model version (0 = never reload)", float,
                                  default=2.0)
    grace: float = _opt("seconds in-flight RPCs get to finish after SIGTERM/SIGINT", float, default=10.0)
    max_message_mb: float = _opt("largest request or response message in MB (gRPC's own default is 4)", float,
                                 default=64.0)
    max_batch: int = _opt("most documents in one TagBatch request (more = INVALID_ARGUMENT)", int, default=1000)
    on_too_long: str = _opt("what happens to a document over --max-chars: 'truncate' (score its start, "
                            "flag truncated=true in the response) or 'reject' (INVALID_ARGUMENT)",
                            choices=("truncate", "reject"), default="truncate")
    max_concurrent_rpcs: int = _opt("Tag/TagStream/reflection RPCs waiting or in progress per worker before new "
                                    "ones get RESOURCE_EXHAUSTED at once (health checks and GetModelInfo/ListTopics "
                                    "are never counted; 0 = unlimited)", int, default=256)
    batch_threads: int = _opt("threads per worker that run TagBatch, apart from the --threads that answer Tag and "
                              "the two that answer health checks, so big batches cannot hold up either "
                              "(0 = a quarter of --threads, at least 1)", int, default=0)
    max_inflight_documents: int = _opt("TagBatch documents being tagged at once per worker: a batch that would go "
                                       "over gets RESOURCE_EXHAUSTED at once instead of queueing (0 = twice "
                                       "--max-batch); at most --batch-threads more batches wait for a thread",
                                       int, default=0)
    max_connection_age: float = _opt("seconds before a client connection is asked to reconnect (GOAWAY, then "
                                     "--grace to finish), so connections spread again over restarted workers and "
                                     "new pods (0 = never)", float, default=30.0)
    coalesce: bool = _opt("tag concurrent single-document calls (Tag, TagStream messages) together in one "
                          "batch as they arrive, without waiting for more (--no-coalesce: one at a time)", _bool,
                          default=True)
    health_port: int = _opt("also serve grpc.health.v1 alone, in plaintext, on this port of --host: for probes that "
                            "cannot speak TLS, such as Kubernetes' grpc probe (0 = no such port)", int, default=0)
    model_public_key: Path | None = _opt(
        "PEM ed25519 public key, kept outside the model folder: serve only versions whose manifest.json has a valid "
        "detached signature (manifest.json.sig) by its private key", Path, default=None)
    tls_cert: Path | None = _opt("PEM certificate chain: serve TLS (with --tls-key)", Path, default=None)
    tls_key: Path | None = _opt("PEM private key of --tls-cert", Path, default=None)
    tls_client_ca: Path | None = _opt("PEM CA bundle: require client certificates signed by it (mutual TLS)", Path,
                                      default=None)
    token_file: Path | None = _opt("file of bearer tokens, one per line: every RPC but health checks must send "
                                   "'authorization: Bearer TOKEN' (else UNAUTHENTICATED)", Path, default=None)
    max_streams: int = _opt("TagStreams open at once per worker before new ones get RESOURCE_EXHAUSTED; an open "
                            "stream holds an RPC thread even while idle, so this stays below --threads and the "
                            "rest answer Tag, TagBatch and health checks (0 = half of --threads)", int, default=0)
    stream_idle_timeout: float = _opt("seconds a TagStream may wait for its client's next message before the "
                                      "server cancels it and frees its thread (0 = never)", float, default=60.0)
    metrics_port: int = _opt("Prometheus /metrics HTTP port (0 = no metrics endpoint)", int, default=9100)
    metrics_host: str = _opt("address the metrics endpoint listens on (default: --host's)", default="")
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
    def batch_thread_count(self) -> int:
        return self.batch_threads or max(1, self.threads // 4)

    @property
    def inflight_document_limit(self) -> int:
        return self.max_inflight_documents or 2 * self.max_batch

    @property
    def metrics_address(self) -> str:
        """Where /metrics listens: --metrics-host, else the gRPC --host (brackets of an IPv6 literal removed)."""
        return (self.metrics_host or self.host).strip("[]")

    @property
    def stream_limit(self) -> int:
        """Streams allowed at once: --max-streams, or half the threads (at least one), kept under
        --max-concurrent-rpcs."""
        if self.max_streams:
            return self.max_streams
        cap = self.max_concurrent_rpcs - 1 if self.max_concurrent_rpcs else self.threads
        return max(1, min(self.threads // 2, cap))

    def _checks(self) -> list[tuple[Callable[[], bool], str, str]]:
        u32 = 2**32 - 1  # the ServerLimits message carries these as uint32
        return super()._checks() + [
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
            (lambda: self.max_concurrent_rpcs >= 0, "max_concurrent_rpcs", "must be >= 0"),
            (lambda: 0 <= self.max_streams < self.threads, "max_streams",
             f"must be in 0..{self.threads - 1} (below --threads, so a thread is always left for other calls)"),
            (lambda: math.isfinite(self.stream_idle_timeout) and self.stream_idle_timeout >= 0, "stream_idle_timeout",
             "must be a number >= 0"),
            (lambda: 0 <= self.metrics_port <= 65535, "metrics_port", "must be in 0..65535"),
            (lambda: self.batch_threads >= 0, "batch_threads", "must be >= 0"),
            (lambda: 0 <= self.health_port <= 65535 and (self.health_port == 0 or self.health_port != self.port),
             "health_port", "must be in 0..65535 and differ from --port"),
            (lambda: self.max_inflight_documents == 0 or self.max_inflight_documents >= self.max_batch,
             "max_inflight_documents", f"must be 0 or >= --max-batch ({self.max_batch}), or a full batch could "
                                       "never run"),
            (lambda: math.isfinite(self.max_connection_age) and self.max_connection_age >= 0, "max_connection_age",
             "must be a number >= 0"),
            (lambda: (self.tls_cert is None) == (self.tls_key is None), "tls_key",
             "and --tls-cert / TAGGER_TLS_CERT go together"),
            (lambda: self.tls_client_ca is None or self.tls_cert is not None, "tls_client_ca",
             "needs --tls-cert and --tls-key (mutual TLS is TLS first)"),
            (lambda: math.isfinite(self.review_sample) and 0 <= self.review_sample <= 1, "review_sample",
             "must be a number in 0..1"),
        ]


def setting_fields(cls: type[Settings], names: Iterable[str] | None = None) -> list[Field]:
    """The fields of a settings class (those named, in the class's order)."""
    wanted = None if names is None else set(names)
    found = [f for f in fields(cls) if wanted is None or f.name in wanted]
    if wanted is not None and len(found) != len(wanted):
        raise ValueError(f"{cls.__name__} has no setting(s) {sorted(wanted - {f.name for f in found})}")
    return found


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def from_args(args: Any = None, environ: Mapping[str, str] | None = None,
              cls: type[_S] = ServeConfig) -> _S:  # type: ignore[assignment]
    """Resolve the settings of ``cls``: a given flag (an attribute of ``args`` that is not None) wins over
    its environment variable, which wins over the default. A command offering only some flags gets
    the rest from the environment or the defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(cls):
        flag_value = getattr(args, f.name, None) if args is not None else None
        if flag_value is not None:
            values[f.name] = flag_value
            continue
        name = env_name(f.name)
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = f.metadata["parse"](raw)
        except ValueError as e:
            raise ConfigError(f"environment variable {name}={raw!r} is invalid: {e}") from e
        choices = f.metadata["choices"]
        if choices and value not in choices:
            raise ConfigError(f"environment variable {name}={raw!r} must be one of {', '.join(choices)}")
        values[f.name] = value
    return cls(**values).validate()
