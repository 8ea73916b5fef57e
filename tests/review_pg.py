"""A real, throw-away PostgreSQL server for the review store's tests and bench: ``initdb`` + ``pg_ctl`` in a
temporary folder, listening only on a unix socket there (no TCP port, nothing shared with the machine).

PostgreSQL refuses to run as root; when the tests run as root (CI does) the server runs as the
``postgres`` system account that Debian's package creates, in a folder handed to it.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def pg_bindir() -> Path:
    """The newest PostgreSQL server binaries installed (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")


def _free_port() -> int:
    # The port only names the socket file (.s.PGSQL.<port>); nothing listens on TCP.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a fresh server; yields a ``postgresql://`` URL of an empty database; stops and deletes it after."""
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="tagger-pg-"))
    run_as: dict = {}
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    data, sock, port = root / "data", root, _free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, env=env, **run_as)
        opts = f"-c listen_addresses='' -k {sock} -p {port} -c fsync=off -c max_connections=50"
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60",
                        "start"], check=True, capture_output=True, env=env, **run_as)
        subprocess.run([str(bindir / "createdb") if (bindir / "createdb").exists() else "createdb",
                        "-h", str(sock), "-p", str(port), "-U", "postgres", "review"],
                       check=True, capture_output=True, env=env, **run_as)
        yield f"postgresql://postgres@/review?host={sock}&port={port}"
    except subprocess.CalledProcessError as e:
        log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
        raise RuntimeError(f"{e.cmd[0]} failed: {e.stderr.decode(errors='replace')}\n{log}") from e
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False,
                           capture_output=True, env=env, **run_as)
        shutil.rmtree(root, ignore_errors=True)
