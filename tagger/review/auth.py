"""Secrets of the review app: password hashing (scrypt, a standard memory-hard KDF from hashlib),
bearer/session tokens (stored as sha256 hashes only) and the sign-in rate limiter."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["FailureLog", "LoginLimiter", "hash_password", "new_token", "token_hash", "verify_password"]

# scrypt cost: n=2**14, r=8 (16 MiB, ~50 ms here): OWASP's floor for scrypt, cheap enough for sign-in.
_N, _R, _P = 2**14, 8, 1
_DUMMY_SALT = b"\0" * 16


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64); the parameters travel with the hash so they can be raised later."""
    if not password:
        raise ValueError("an empty password is not allowed")
    salt = secrets.token_bytes(16)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(_scrypt(password, salt, _N, _R, _P))}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check. ``stored`` None (no such user, or an API-only account) does the same work and fails."""
    if stored is None:
        _scrypt(password, _DUMMY_SALT, _N, _R, _P)
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Tokens are 256 random bits, so a plain sha256 suffices (no KDF needed) and allows an indexed lookup."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class FailureLog(Protocol):
    """Where failed sign-ins are kept (:class:`tagger.review.store.Store`: the ``login_failures`` table)."""

    def login_failures(self, keys: Sequence[str], since: datetime) -> dict[str, tuple[int, datetime]]: ...

    def record_login_failure(self, keys: Sequence[str], at: datetime, prune_before: datetime) -> None: ...


class LoginLimiter:
    """At most ``attempts`` failed sign-ins per ``window`` seconds for one client address and for one user
    name (either limit blocks), so neither one address guessing many names nor many addresses guessing
    one name gets far. The failures live in the review database, so every app process on the store, and
    a restarted one, spends the same budget. The client address is the one the app sees: the peer, or
    behind ``--behind-proxy`` the address the trusted proxy reports (docs/review.md)."""

    def __init__(self, log: FailureLog, attempts: int = 5, window: float = 300.0) -> None:
        self.log, self.attempts, self.window = log, attempts, timedelta(seconds=window)

    @staticmethod
    def _keys(client: str, name: str) -> list[str]:
        return [f"ip:{client[:250]}", f"user:{name[:250]}"]  # the key column holds 300 characters

    def retry_after(self, client: str, name: str) -> float:
        """Seconds until this client or name may try again; 0 if it may now."""
        now = _utcnow()
        found = self.log.login_failures(self._keys(client, name), now - self.window)
        waits = [(oldest + self.window - now).total_seconds() for n, oldest in found.values() if n >= self.attempts]
        return max(max(waits, default=0.0), 0.0)

    def failed(self, client: str, name: str) -> None:
        now = _utcnow()
        self.log.record_login_failure(self._keys(client, name), now, now - self.window)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC, the store's convention
