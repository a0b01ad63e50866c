"""Sync state in ``sync_status``: the stored cursor, the in-flight run, and the lease.

Single flight uses a lease row rather than an advisory lock. A session-level advisory lock is
lost (or worse, kept by another client) behind a transaction pooler, and a transaction-level
one would have to be held across the BigQuery read, i.e. an idle transaction for minutes.
The lease is plain data: it works through any pooler, expires on its own when an invocation
is killed, and doubles as a fencing token: the page commit re-checks it under ``FOR UPDATE``,
so an invocation that overran its lease cannot overwrite its successor's work.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sync.cursor import EPOCH, Keyset
from sync.db import Connection
from sync.errors import StaleLeaseError

ENTITY = "opportunities"

_STATE_COLUMNS = (
    "run_id, run_trigger, run_next_page, run_upper_bound, run_cursor_stamp, run_cursor_id,"
    " run_opportunities_done, run_link_upper_bound, run_link_cursor_stamp, run_link_cursor_key,"
    " run_links_done, last_sync_timestamp, link_watermark, last_resync_message_id, status"
)


@dataclass(frozen=True)
class SyncState:
    """What ``sync_status`` says about the stored cursor and the run in progress."""

    run_id: uuid.UUID | None
    trigger: str | None
    next_page: int | None
    upper_bound: dt.datetime | None
    cursor: Keyset
    opportunities_done: bool
    link_upper_bound: dt.datetime | None
    link_cursor: Keyset
    links_done: bool
    watermark: dt.datetime | None
    link_watermark: dt.datetime | None
    last_resync_message_id: str | None
    status: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> SyncState:
        run_id = row[0]
        return cls(
            run_id=uuid.UUID(str(run_id)) if run_id is not None else None,
            trigger=row[1],
            next_page=row[2],
            upper_bound=row[3],
            cursor=Keyset(row[4] or EPOCH, row[5] or ""),
            opportunities_done=bool(row[6]),
            link_upper_bound=row[7],
            link_cursor=Keyset(row[8] or EPOCH, row[9] or ""),
            links_done=bool(row[10]),
            watermark=row[11],
            link_watermark=row[12],
            last_resync_message_id=row[13],
            status=row[14],
        )


def acquire_lease(conn: Connection, owner: uuid.UUID, seconds: int) -> SyncState | None:
    """Take the lease if it is free or expired; None when another invocation holds it."""
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_status SET lease_owner = %s, lease_expires_at = clock_timestamp() + make_interval(secs => %s)"
        " WHERE entity_type = %s AND (lease_owner IS NULL OR lease_expires_at < clock_timestamp())"
        f" RETURNING {_STATE_COLUMNS}",
        (str(owner), seconds, ENTITY),
    )
    row = cur.fetchone()
    conn.commit()
    return SyncState.from_row(tuple(row)) if row else None


def release_lease(conn: Connection, owner: uuid.UUID) -> None:
    """Give the lease back early (on a handled failure or a dropped message)."""
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_status SET lease_owner = NULL, lease_expires_at = NULL WHERE entity_type = %s AND lease_owner = %s",
        (ENTITY, str(owner)),
    )
    conn.commit()


def fence(conn: Connection, owner: uuid.UUID) -> None:
    """Inside the write transaction: lock the state row and prove we still hold the lease."""
    cur = conn.cursor()
    cur.execute("SELECT lease_owner FROM sync_status WHERE entity_type = %s FOR UPDATE", (ENTITY,))
    row = cur.fetchone()
    if row is None or row[0] is None or str(row[0]) != str(owner):
        msg = f"lease lost before commit (held by {row[0] if row else None}); another invocation took over"
        raise StaleLeaseError(msg)


def read_state(conn: Connection) -> SyncState:
    cur = conn.cursor()
    cur.execute(f"SELECT {_STATE_COLUMNS} FROM sync_status WHERE entity_type = %s", (ENTITY,))
    row = cur.fetchone()
    conn.rollback()
    if row is None:
        msg = "sync_status has no 'opportunities' row; run `python -m sync migrate`"
        raise RuntimeError(msg)
    return SyncState.from_row(tuple(row))


def mark_failed(conn: Connection, owner: uuid.UUID, error: str, run_id: uuid.UUID | None) -> None:
    """Record a permanent failure and free the lease; the stored cursor is kept."""
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_status SET status = 'failed', last_error = %s, updated_at = now(),"
        " lease_owner = NULL, lease_expires_at = NULL"
        " WHERE entity_type = %s AND (lease_owner IS NULL OR lease_owner = %s)",
        (error[:2000], ENTITY, str(owner)),
    )
    if run_id is not None:
        cur.execute(
            "UPDATE sync_runs SET error = %s, status = 'failed', finished_at = now() WHERE run_id = %s AND status = 'running'",
            (error[:2000], str(run_id)),
        )
    conn.commit()


@dataclass(frozen=True)
class PageProgress:
    """Where a committed page leaves its run; written in the page's own transaction."""

    run_id: uuid.UUID
    trigger: str
    page: int
    new_run: bool
    run_done: bool
    upper_bound: dt.datetime | None
    cursor: Keyset
    opportunities_done: bool
    link_upper_bound: dt.datetime | None
    link_cursor: Keyset
    links_done: bool
    watermark: dt.datetime | None
    link_watermark: dt.datetime | None
    written: int
    skipped: int
    resync_message_id: str | None


def record_page(conn: Connection, p: PageProgress) -> None:
    """Store the cursor (or, when the run is done, the new watermarks) and free the lease."""
    in_run = not p.run_done
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_status SET"
        " run_id = %s, run_trigger = %s, run_next_page = %s,"
        " run_started_at = CASE WHEN %s THEN now() ELSE run_started_at END,"
        " run_upper_bound = %s, run_cursor_stamp = %s, run_cursor_id = %s, run_opportunities_done = %s,"
        " run_link_upper_bound = %s, run_link_cursor_stamp = %s, run_link_cursor_key = %s, run_links_done = %s,"
        " last_sync_timestamp = CASE WHEN %s THEN %s ELSE last_sync_timestamp END,"
        " link_watermark = CASE WHEN %s THEN %s ELSE link_watermark END,"
        " items_synced = CASE WHEN %s THEN 0 ELSE items_synced END + %s,"
        " error_count = CASE WHEN %s THEN 0 ELSE error_count END + %s,"
        " status = %s, last_error = NULL, last_success_at = CASE WHEN %s THEN now() ELSE last_success_at END,"
        " last_resync_message_id = coalesce(%s, last_resync_message_id),"
        " lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
        " WHERE entity_type = %s",
        (
            str(p.run_id) if in_run else None,
            p.trigger if in_run else None,
            p.page + 1 if in_run else None,
            p.new_run,
            p.upper_bound if in_run else None,
            p.cursor.stamp if in_run else None,
            p.cursor.key if in_run else None,
            p.opportunities_done and in_run,
            p.link_upper_bound if in_run else None,
            p.link_cursor.stamp if in_run else None,
            p.link_cursor.key if in_run else None,
            p.links_done and in_run,
            p.run_done,
            p.watermark,
            p.run_done,
            p.link_watermark,
            p.new_run,
            p.written,
            p.new_run,
            p.skipped,
            "success" if p.run_done else "running",
            p.run_done,
            p.resync_message_id,
            ENTITY,
        ),
    )
