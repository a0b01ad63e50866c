"""A PostgreSQL server for tests and the demo: the machine's own if it answers, else a
throwaway cluster started from the installed binaries (as the ``postgres`` user when root,
because ``initdb`` refuses to run as root)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5432


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    msg = "no PostgreSQL server at 127.0.0.1:5432 and no initdb binary found; install postgresql (Debian: apt-get install postgresql)"
    raise RuntimeError(msg)


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def ensure_server() -> str:
    """A ``postgresql://`` admin URL for a running server (database ``postgres``)."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return url
    if _answers(DEFAULT_HOST, DEFAULT_PORT):
        return f"postgresql://postgres@{DEFAULT_HOST}:{DEFAULT_PORT}/postgres"
    return _throwaway_cluster()


def _throwaway_cluster() -> str:
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="opportunity-sync-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    data = root / "data"
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind((DEFAULT_HOST, 0))
        port = int(s.getsockname()[1])
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-o",
                f"-p {port} -h {DEFAULT_HOST} -k {root} -c fsync=off",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    atexit.register(
        lambda: subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), check=False, capture_output=True
        )
    )
    deadline = time.monotonic() + 30
    while not _answers(DEFAULT_HOST, port):
        if time.monotonic() > deadline:
            msg = f"throwaway PostgreSQL did not start; see {root / 'log'}"
            raise RuntimeError(msg)
        time.sleep(0.2)
    return f"postgresql://postgres@{DEFAULT_HOST}:{port}/postgres"
