"""The package's one transaction rule, as dlt's ``sql_client.begin_transaction`` has it.

Whoever owns a unit of work opens it with :func:`transaction`: it commits when the block ends
and rolls back and re-raises when it fails. Functions called inside never commit or roll back,
so what they write lands together or not at all. :func:`rolled_back` is the same for a dry run.

A transaction opened with ``within`` (seconds) is bounded by the server: ``statement_timeout``
and ``lock_timeout`` are set for it alone (``SET LOCAL`` semantics, gone at commit), never
looser than what the database or role already sets. So a statement or a lock wait cannot outlast
the invocation's deadline (``sync/core/deadline.py``), and the server cancels what a killed client
left running instead of holding its locks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from sync.core.errors import TimeBudgetError
from sync.postgres.db import Connection

# set_config(..., true) is SET LOCAL; pg_settings gives both in milliseconds; least() ignores the
# NULL of a setting that is 0 (off), so a limit an operator set on the database or role still holds.
_BOUND = (
    "SELECT set_config('statement_timeout', least(%s::bigint, (SELECT nullif(setting::bigint, 0) FROM pg_settings"
    " WHERE name = 'statement_timeout'))::text, true),"
    " set_config('lock_timeout', least(%s::bigint, (SELECT nullif(setting::bigint, 0) FROM pg_settings"
    " WHERE name = 'lock_timeout'))::text, true)"
)


@contextlib.contextmanager
def transaction(conn: Connection, *, within: float | None = None, lock_wait: float | None = None) -> Iterator[Connection]:
    """Commit on success; roll back and re-raise on any error.

    Args:
        conn: the connection; its transaction starts here.
        within: seconds every statement and lock wait of this transaction may take in all; None
            leaves the session's limits as they are.
        lock_wait: a shorter bound for lock waits alone (``lock_timeout``), when given.

    Raises:
        TimeBudgetError: ``within`` is already spent; nothing was sent to the server.
    """
    try:
        if within is not None:
            bound(conn, within, lock_wait)
        yield conn
    except BaseException:
        _rollback(conn)
        raise
    conn.commit()


@contextlib.contextmanager
def rolled_back(conn: Connection) -> Iterator[Connection]:
    """Run a block whose writes are always undone (a dry run)."""
    try:
        yield conn
    finally:
        _rollback(conn)


def bound(conn: Connection, within: float, lock_wait: float | None = None) -> None:
    """Bound the open transaction's statements and lock waits to ``within`` seconds from now.

    Raises:
        TimeBudgetError: ``within`` is already spent.
    """
    if within <= 0:
        msg = "the invocation's time budget is spent; the page will be retried smaller"
        raise TimeBudgetError(msg)
    # Whole milliseconds, at least one: 0 would mean "no limit" to Postgres.
    statement = max(1, math.floor(within * 1000))
    lock = min(statement, max(1, math.floor(lock_wait * 1000))) if lock_wait is not None else statement
    conn.cursor().execute(_BOUND, (statement, lock))


def _rollback(conn: Connection) -> None:
    # A connection that broke mid-transaction cannot roll back; the server aborts the
    # transaction when the session ends, and the error worth reporting is the original one.
    with contextlib.suppress(Exception):
        conn.rollback()
