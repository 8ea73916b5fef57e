"""`tagger serve` as a real subprocess on 127.0.0.1 for tests; the port comes from its "ready" line."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TypeVar

from tagger.client import TaggerClient

REPO = Path(__file__).resolve().parent.parent


class ServeProcess:
    """Start ``tagger serve --host 127.0.0.1 ARGS…``; collects its log, reads the OS-assigned port."""

    def __init__(self, *args: str, start_timeout: float = 60) -> None:
        cmd = [sys.executable, "-m", "tagger", "serve", "--host", "127.0.0.1", *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=os.environ | {"TAGGER_LOG_LEVEL": "INFO"})
        self.log: list[str] = []
        self.port = 0
        self.start_timeout = start_timeout
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"ready: .* on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()  # the process ended: stop waiting

    def wait_ready(self) -> int:
        assert self._ready.wait(self.start_timeout) and self.port, "server did not start:\n" + "".join(self.log)
        return self.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServeProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


_Load = TypeVar("_Load", bound="ClientLoad")


class ClientLoad:
    """Client threads that run from the start of a with-block until its end; then they are told to
    stop (``stop``), joined, and the client is closed. Subclasses set ``client``, ``stop`` and ``threads``."""

    client: TaggerClient
    stop: threading.Event
    threads: list[threading.Thread]

    def __enter__(self: _Load) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        self.client.close()
