"""One Postgres connection kept between the invocations a warm instance serves.

Opening a connection is a TCP (and on Cloud SQL, TLS and the connector's) handshake, password
authentication and the session settings: 37 ms a page locally, more through the connector. A
warm instance serves one invocation at a time, so it keeps the connection the last invocation
ended with cleanly and hands it to the next after one round trip proves it alive. A connection
an invocation failed on is closed, never kept: its session may hold an aborted transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sync.postgres.db import Connection, close_quietly

log = logging.getLogger(__name__)


class IdleConnection:
    """At most one idle connection, taken and given back around each invocation.

    Args:
        connect: opens a new connection (session settings applied, autocommit off).
    """

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._idle: Connection | None = None
        self._lock = threading.Lock()

    def take(self) -> Connection:
        """The kept connection if it still answers, else a new one."""
        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None:
            if _answers(conn):
                return conn
            log.info("kept connection is gone; opening a new one", extra={"event": "connection_reopened"})
            close_quietly(conn)
        return self._connect()

    def give_back(self, conn: Connection, *, failed: bool) -> None:
        """Keep ``conn`` for the next invocation, unless this one failed on it or one is kept already."""
        if not failed:
            with self._lock:
                if self._idle is None:
                    self._idle = conn
                    return
        close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None:
            close_quietly(conn)


def _answers(conn: Connection) -> bool:
    # A restarted server, a dropped proxy or an idle timeout all surface here, before the
    # invocation takes the lease on a connection that cannot finish the page.
    try:
        conn.autocommit = True
        try:
            conn.cursor().execute("SELECT 1")
        finally:
            conn.autocommit = False
    except Exception:  # noqa: BLE001 - any failure means "do not reuse"; the caller reconnects
        return False
    return True
