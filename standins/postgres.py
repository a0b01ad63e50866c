"""A PostgreSQL server for tests and the demo: the machine's own if it answers, else a
throwaway cluster started from the installed binaries (as the ``postgres`` user when root,
because ``initdb`` refuses to run as root).

A cluster of another major comes from a chosen ``bin`` folder: ``Cluster.start(bindir=...)``, or
``TEST_POSTGRES_BINDIR`` for every cluster of a test session (``standins.postgres_majors`` installs
the majors Cloud SQL offers).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from standins.postgres_majors import library_path

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5432


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _bindir() -> Path:
    chosen = os.environ.get("TEST_POSTGRES_BINDIR")
    if chosen:
        if not (Path(chosen) / "initdb").exists():
            msg = f"TEST_POSTGRES_BINDIR={chosen} has no initdb; install a major with: python -m standins.postgres_majors"
            raise RuntimeError(msg)
        return Path(chosen)
    return system_bindir()


def system_bindir() -> Path:
    """The machine's own server binaries (Debian's postgresql package)."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    msg = (
        "no PostgreSQL server at 127.0.0.1:5432 and no initdb binary found;"
        " install postgresql (Debian: apt-get install postgresql)"
    )
    raise RuntimeError(msg)


def _own(path: Path) -> None:
    path.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres")


def _as_postgres(cmd: list[str], bindir: Path) -> list[str]:
    # Registry-packaged binaries carry their own libraries; env passes the path through runuser.
    libs = library_path(bindir)
    if libs is not None:
        cmd = ["env", f"LD_LIBRARY_PATH={libs}", *cmd]
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
    cluster = Cluster.start()
    atexit.register(cluster.stop)
    return cluster.url


@dataclass
class Cluster:
    """A private PostgreSQL cluster on a random port, for tests that restart the server.

    With ``password``, TCP logins use scram-sha-256 (the superuser's password is ``password``),
    so a wrong password is refused as on a real server; the machine's own server trusts every
    login from 127.0.0.1. With ``tls`` (certificate and key, PEM), the server also speaks TLS.
    """

    bindir: Path
    root: Path
    port: int
    password: str | None = None
    tls: bool = False

    @property
    def url(self) -> str:
        auth = f"postgres:{quote(self.password, safe='')}" if self.password else "postgres"
        return f"postgresql://{auth}@{DEFAULT_HOST}:{self.port}/postgres"

    @property
    def major(self) -> int:
        """The server's major version, from the cluster's own PG_VERSION file."""
        return int((self.root / "data" / "PG_VERSION").read_text().strip())

    @classmethod
    def start(cls, *, password: str | None = None, tls: tuple[str, bytes] | None = None, bindir: Path | None = None) -> Cluster:
        """A new cluster from ``bindir`` (default: ``TEST_POSTGRES_BINDIR``, else the machine's binaries)."""
        bindir = bindir or _bindir()
        root = Path(tempfile.mkdtemp(prefix="opportunity-sync-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, user="postgres")
        auth = ["--auth=trust"]
        if password is not None:
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n")
            _own(pwfile)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        subprocess.run(
            _as_postgres([str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres", *auth, "-E", "UTF8"], bindir),
            check=True,
            capture_output=True,
        )
        if tls is not None:
            # Postgres refuses a key file that others can read.
            for name, content in (("server.crt", tls[0].encode()), ("server.key", tls[1])):
                (root / name).write_bytes(content)
                _own(root / name)
        with socket.socket() as s:
            s.bind((DEFAULT_HOST, 0))
            port = int(s.getsockname()[1])
        cluster = cls(bindir, root, port, password, tls is not None)
        cluster._ctl("start")
        return cluster

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -h {DEFAULT_HOST} -k {self.root} -c fsync=off"
        if self.tls:
            options += f" -c ssl=on -c ssl_cert_file={self.root / 'server.crt'} -c ssl_key_file={self.root / 'server.key'}"
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-o", options]
        subprocess.run(_as_postgres([*cmd, *extra, action], self.bindir), check=True, capture_output=True)
        if action != "stop":
            deadline = time.monotonic() + 30
            while not _answers(DEFAULT_HOST, self.port):
                if time.monotonic() > deadline:
                    msg = f"PostgreSQL did not come up; see {self.root / 'log'}"
                    raise RuntimeError(msg)
                time.sleep(0.1)

    def restart(self) -> None:
        """A fast restart: every open connection is terminated, as on a Cloud SQL failover."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)
