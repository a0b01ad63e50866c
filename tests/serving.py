"""The function served by functions-framework in its own process group, pushed to and killed for real.

A test starts the server as Cloud Functions does, posts one Pub/Sub push to it, waits until the
page is stuck where the test wants it (a slow row in the write, see :func:`install_slow_rows`), and
sends SIGKILL to the whole process group: no ``finally``, no rollback, no lease release, exactly
what a platform timeout or an out-of-memory kill leaves behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from standins.process import free_port

ROOT = Path(__file__).resolve().parent.parent

# A row whose gong_opportunity_id is in test_slow_ids sleeps in every write that touches it.
SLOW_ROW_SQL = (
    "CREATE TABLE test_slow_ids (id text PRIMARY KEY)",
    "CREATE FUNCTION test_slow_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF EXISTS (SELECT 1 FROM test_slow_ids WHERE id = NEW.gong_opportunity_id) THEN PERFORM pg_sleep(%s); END IF;"
    " RETURN NEW; END $$",
    "CREATE TRIGGER test_slow_row BEFORE INSERT OR UPDATE ON opportunities FOR EACH ROW EXECUTE FUNCTION test_slow_row()",
)


def install_slow_rows(env: Any, seconds: int, ids: list[str]) -> None:
    """Make writing any of ``ids`` take ``seconds`` (pg_sleep in a row trigger)."""
    for sql in SLOW_ROW_SQL:
        env.query(sql.replace("%s", str(int(seconds))))
    for row_id in ids:
        env.query("INSERT INTO test_slow_ids (id) VALUES (%s)", (row_id,))


def first_in_read_order(data: Any) -> str:
    """The opportunity a run's first page reads first: the smallest (stamp, id)."""
    return min((o["_fivetran_synced"], o["id"]) for o in data.rows("opportunity"))[1]


class Server:
    """``python -m functions_framework`` serving ``main.sync_opportunities`` in a new session."""

    def __init__(self, env_vars: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--target",
                "sync_opportunities",
                "--signature-type",
                "cloudevent",
                "--source",
                str(ROOT / "main.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env={**os.environ, **env_vars},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the kill takes every process in it
        )
        self.answers: list[int | str] = []
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1)
            except urllib.error.HTTPError:
                return  # it answers (a GET is refused, which is fine)
            except OSError:
                assert self.process.poll() is None, "functions-framework exited"
                assert time.monotonic() < deadline, "functions-framework did not start"
                time.sleep(0.2)

    def push(self, body: dict[str, Any], message_id: str = "m-1") -> threading.Thread:
        """POST one Pub/Sub push in the background (it may never be answered: the server dies)."""
        envelope = {
            "message": {"data": base64.b64encode(json.dumps(body).encode()).decode(), "messageId": message_id},
            "subscription": "projects/local-project/subscriptions/sync",
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/",
            data=json.dumps(envelope).encode(),
            headers={
                "Content-Type": "application/json",
                "ce-specversion": "1.0",
                "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                "ce-source": "//pubsub.googleapis.com/projects/local-project/topics/sync",
                "ce-id": message_id,
            },
        )

        def send() -> None:
            try:
                with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 - local
                    self.answers.append(response.status)
            except urllib.error.HTTPError as err:
                self.answers.append(err.code)
            except OSError as err:
                self.answers.append(type(err).__name__)  # the connection died with the server

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    def kill(self) -> None:
        """SIGKILL the whole process group, as the platform does."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


def wait_until(condition: Any, timeout: float, what: str, step: float = 0.1) -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(step)
    return time.monotonic() - start


def sleeping_sessions(env: Any) -> list[int]:
    """Backends of the test database sleeping in the slow-row trigger."""
    rows = env.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'")
    return [r[0] for r in rows]


def status_row_locked(env: Any) -> bool:
    """Whether some session holds the ``sync_status`` row lock (FOR UPDATE NOWAIT is refused)."""
    try:
        env.query("SELECT 1 FROM sync_status FOR UPDATE NOWAIT")
    except Exception as err:
        args = getattr(err, "args", ())
        if args and isinstance(args[0], dict) and args[0].get("C") == "55P03":
            return True
        raise
    return False


def session_alive(env: Any, pid: int) -> bool:
    return bool(env.query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))
