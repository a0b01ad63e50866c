"""The package's one transaction rule, as dlt's ``sql_client.begin_transaction`` has it.

Whoever owns a unit of work opens it with :func:`transaction`: it commits when the block ends
and rolls back and re-raises when it fails. Functions called inside never commit or roll back,
so what they write lands together or not at all. :func:`rolled_back` is the same for a dry run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sync.db import Connection


@contextlib.contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """Commit on success; roll back and re-raise on any error."""
    try:
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


def _rollback(conn: Connection) -> None:
    # A connection that broke mid-transaction cannot roll back; the server aborts the
    # transaction when the session ends, and the error worth reporting is the original one.
    with contextlib.suppress(Exception):
        conn.rollback()
