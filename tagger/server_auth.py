"""Who may call the server: TLS (and mutual TLS) credentials, and bearer tokens checked per RPC.

Tokens come from a file (``--token-file``), one per line (blank lines and ``#`` comments skipped;
several lines let a token be rotated without downtime). A caller sends gRPC metadata
``authorization: Bearer TOKEN``. :class:`AuthInterceptor` checks it on gRPC's polling thread before
the RPC is queued: a missing or wrong token gets UNAUTHENTICATED and never a result. Health
(``grpc.health.v1.Health``) stays open so probes need no secret; every other service, reflection
included, needs a token. Comparison is constant-time (SHA-256 digests compared with
:func:`hmac.compare_digest`, so neither content nor length leaks through timing); tokens are never
logged, and the refusal message does not echo what was sent.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from pathlib import Path

import grpc

from tagger.server_admission import rejecting_handler

__all__ = ["AuthInterceptor", "OPEN_SERVICES", "is_loopback", "read_tokens", "server_credentials"]

# Services callable without a token: probes (kubelet's grpc probe, load balancers) carry no secret.
OPEN_SERVICES = ("/grpc.health.v1.Health/",)


def read_tokens(path: Path) -> list[str]:
    """The tokens in a token file; raises OSError if unreadable, ValueError if it holds none."""
    tokens = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            if any(c.isspace() for c in line):
                raise ValueError(f"{path}: a token may not contain spaces (one token per line)")
            tokens.append(line)
    if not tokens:
        raise ValueError(f"{path}: no token in the file (one token per line)")
    return tokens


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses every RPC outside OPEN_SERVICES without a valid ``authorization: Bearer`` token."""

    def __init__(self, tokens: Sequence[str], reject_pool: futures.ThreadPoolExecutor,
                 on_refused: Callable[[str, grpc.StatusCode], None]) -> None:
        if not tokens:
            raise ValueError("at least one token is needed")
        self._digests = [_digest(t) for t in tokens]
        self.on_refused = on_refused
        self._refusal = rejecting_handler(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or invalid token: send gRPC metadata 'authorization: Bearer <token>'", reject_pool)

    def valid(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode("latin-1") if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    return False
                presented = _digest(token.strip())
                ok = False
                for digest in self._digests:  # no early exit: which token matched does not show in timing
                    ok |= hmac.compare_digest(presented, digest)
                return ok
        return False

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method.startswith(OPEN_SERVICES) or self.valid(details.invocation_metadata):
            return continuation(details)
        self.on_refused(details.method, grpc.StatusCode.UNAUTHENTICATED)
        return self._refusal


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """TLS credentials from PEM files; with ``client_ca``, clients must present a certificate it signed."""
    pair = (Path(key).read_bytes(), Path(cert).read_bytes())
    if client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials([pair], root_certificates=Path(client_ca).read_bytes(),
                                       require_client_auth=True)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False
