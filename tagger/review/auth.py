"""Secrets of the review app: password hashing (scrypt, a standard memory-hard KDF from hashlib),
bearer/session tokens (stored as sha256 hashes only) and the sign-in rate limiter."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

__all__ = ["LoginLimiter", "hash_password", "new_token", "token_hash", "verify_password"]

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


class LoginLimiter:
    """At most ``attempts`` failed sign-ins per ``window`` seconds for one client address and for one user
    name (either limit blocks), so neither one address guessing many names nor many addresses guessing
    one name gets far. In memory: one review server process (documented)."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts, self.window = attempts, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, client: str, name: str) -> float:
        """Seconds until this client or name may try again; 0 if it may now."""
        now = time.monotonic()
        with self._lock:
            waits = [q[0] + self.window - now for key in (f"ip:{client}", f"user:{name}")
                     if len(q := self._recent(key, now)) >= self.attempts]
        return max(waits, default=0.0)

    def failed(self, client: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"ip:{client}", f"user:{name}"):
                self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # bound memory under a spray of names
                self._failures = {k: q for k, q in self._failures.items() if q and q[-1] > now - self.window}
