"""Throwaway databases and the write counters the unchanged-rerun check reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from standins.postgres import ensure_server
from sync.postgres.db import Connection, connect_url
from sync.postgres.schema import migrate

WATCHED_TABLES = ("opportunities", "call_opportunities", "call_links")


def with_db(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def fresh_database(admin_url: str | None = None, *, migrated: bool = True) -> Iterator[str]:
    """A new database (migrated unless told otherwise), dropped afterwards."""
    admin_url = admin_url or ensure_server()
    name = f"os_bench_{uuid.uuid4().hex[:10]}"
    admin = connect_url(admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    url = with_db(admin_url, name)
    try:
        if migrated:
            conn = connect_url(url)
            migrate(conn)
            conn.close()
        yield url
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def query(conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql, params)
    rows = [tuple(r) for r in cur.fetchall()]
    conn.commit()
    return rows


@dataclass(frozen=True)
class WriteFootprint:
    """What a write leaves behind even when it changes no value."""

    tuples: dict[str, tuple[int, int, int, int]]  # table -> (ins, upd, hot_upd, del)
    sequence_last_value: int | None
    xmin_digest: str  # changes when any row version is replaced
    xmax_digest: str  # changes when any row is locked (FOR UPDATE / ON CONFLICT) or deleted

    def diff(self, later: WriteFootprint) -> dict[str, Any]:
        ins = sum(later.tuples[t][0] - self.tuples[t][0] for t in WATCHED_TABLES)
        upd = sum(later.tuples[t][1] - self.tuples[t][1] for t in WATCHED_TABLES)
        dele = sum(later.tuples[t][3] - self.tuples[t][3] for t in WATCHED_TABLES)
        return {
            "tuples_inserted": ins,
            "tuples_updated": upd,
            "tuples_deleted": dele,
            "sequence_values_used": (later.sequence_last_value or 0) - (self.sequence_last_value or 0),
            "row_versions_replaced": self.xmin_digest != later.xmin_digest,
            "rows_locked_or_deleted": self.xmax_digest != later.xmax_digest,
        }


def footprint(url: str) -> WriteFootprint:
    """Read counters from a new connection, after every writer has disconnected.

    Statistics reach pg_stat_user_tables when a backend flushes them (at exit at the latest),
    so callers close the writing connection first; this polls until two reads agree.
    """
    conn = connect_url(url)
    try:
        previous: dict[str, tuple[int, int, int, int]] | None = None
        for _ in range(50):
            query(conn, "SELECT pg_stat_clear_snapshot()")
            stats = {
                r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4]))
                for r in query(
                    conn,
                    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables"
                    " WHERE relname = ANY(%s)",
                    (list(WATCHED_TABLES),),
                )
            }
            if stats == previous:
                break
            previous = stats
            time.sleep(0.2)
        seq = query(conn, "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM opportunities_id_seq")[0][0]
        digests = query(
            conn,
            "SELECT md5(string_agg(xmin::text, ',' ORDER BY id)), md5(string_agg(xmax::text, ',' ORDER BY id))"
            " FROM opportunities",
        )[0]
        return WriteFootprint(stats, int(seq) if seq is not None else None, str(digests[0]), str(digests[1]))
    finally:
        conn.close()
