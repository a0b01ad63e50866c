"""Sync state in ``sync_status``: the stored cursor, the in-flight run, and the lease.

Single flight uses a lease row rather than an advisory lock. A session-level advisory lock is
lost (or worse, kept by another client) behind a transaction pooler, and a transaction-level
one would have to be held across the BigQuery read, i.e. an idle transaction for minutes.
The lease is plain data: it works through any pooler, expires on its own when an invocation
is killed, and doubles as a fencing token: the page commit re-checks it under ``FOR UPDATE``,
so an invocation that overran its lease cannot overwrite its successor's work.

Every function here runs inside the caller's transaction (``sync/postgres/transaction.py``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from typing import Any

from pg8000.exceptions import DatabaseError

from sync.bigquery.cursor import EPOCH, Keyset, Stream
from sync.bigquery.probe import Mark, marks_from_json, marks_json
from sync.bigquery.results import JobRef, ResultPosition
from sync.bigquery.streams import StreamKind
from sync.core.errors import LOCK_NOT_AVAILABLE, LeaseBusyError, PermanentError, StaleLeaseError, sqlstate_of
from sync.postgres.db import Connection, Cursor
from sync.postgres.schema import ENTITY
from sync.rows import storable
from sync.run.page_plan import PagePlan

# lock_not_available: a lock wait ran past the transaction's lock_timeout (sync/postgres/transaction.py).
# Undoes only the lease UPDATE whose lock wait timed out, not the caller's transaction.
_LEASE_SAVEPOINT = "acquire_lease"


class StateRowMissingError(PermanentError):
    """``sync_status`` has no row for the opportunities stream; retrying cannot create it."""


@dataclass(frozen=True)
class _StreamColumns:
    """Where one stream of the run in progress is kept in ``sync_status``: its cursor, bound and
    done flag, and the BigQuery job holding its result with the rows of it already consumed."""

    upper_bound: str
    cursor_stamp: str
    cursor_key: str
    done: str
    job_project: str
    job_location: str
    job_id: str
    job_offset: str

    def stream(self, row: Mapping[str, Any]) -> Stream:
        """The stream as a ``sync_status`` row read by name holds it."""
        job_id, offset = row[self.job_id], row[self.job_offset]
        job = JobRef(row[self.job_project], row[self.job_location], job_id)
        result = ResultPosition(job, int(offset)) if job_id and offset is not None else None
        return Stream(
            Keyset(row[self.cursor_stamp] or EPOCH, row[self.cursor_key] or ""),
            row[self.upper_bound],
            bool(row[self.done]),
            result,
        )

    def names(self) -> tuple[str, ...]:
        return tuple(str(name) for name in astuple(self))


_OPPORTUNITIES = _StreamColumns(
    "run_upper_bound",
    "run_cursor_stamp",
    "run_cursor_id",
    "run_opportunities_done",
    "run_job_project",
    "run_job_location",
    "run_job_id",
    "run_job_offset",
)
_LINKS = _StreamColumns(
    "run_link_upper_bound",
    "run_link_cursor_stamp",
    "run_link_cursor_key",
    "run_links_done",
    "run_link_job_project",
    "run_link_job_location",
    "run_link_job_id",
    "run_link_job_offset",
)


@dataclass(frozen=True)
class SyncState:
    """What ``sync_status`` says about the stored cursor and the run in progress."""

    run_id: uuid.UUID | None
    trigger: str | None
    next_page: int | None
    opportunities: Stream
    links: Stream
    watermark: dt.datetime | None
    link_watermark: dt.datetime | None
    # Set after a page timed out: pages are read at most this big until it grows back (sync/run/pacing.py).
    page_size_limit: int | None
    status: str
    # The probe's marks of the last completed run, and of the run in progress (sync/bigquery/probe.py).
    source_marks: Mapping[str, Mark] | None = None
    run_source_marks: Mapping[str, Mark] | None = None
    # The full run in progress has recorded every id it read since its first page.
    ids_complete: bool = False
    # Invocations that died on the next page since the last commit, and the size they read.
    page_attempts: int = 0
    page_attempt_size: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SyncState:
        """The state in a ``sync_status`` row read as column name -> value (``SELECT *``: a field
        read is one line here, whatever else the row holds or where a column sits)."""
        run_id = row["run_id"]
        return cls(
            run_id=uuid.UUID(str(run_id)) if run_id is not None else None,
            trigger=row["run_trigger"],
            next_page=row["run_next_page"],
            opportunities=_OPPORTUNITIES.stream(row),
            links=_LINKS.stream(row),
            watermark=row["last_sync_timestamp"],
            link_watermark=row["link_watermark"],
            page_size_limit=row["page_size_limit"],
            status=row["status"],
            source_marks=marks_from_json(row["source_marks"]),
            run_source_marks=marks_from_json(row["run_source_marks"]),
            ids_complete=bool(row["run_ids_complete"]),
            page_attempts=int(row["page_attempts"] or 0),
            page_attempt_size=row["page_attempt_size"],
        )


def _by_name(cur: Cursor) -> dict[str, Any] | None:
    """The statement's one row as column name -> value; None when there is none."""
    row = cur.fetchone()
    if row is None or cur.description is None:
        return None
    return {str(column[0]): value for column, value in zip(cur.description, row, strict=True)}


def acquire_lease(conn: Connection, owner: uuid.UUID, seconds: int) -> SyncState | None:
    """Take the lease if it is free or expired; None when another invocation holds it.

    The row lock is waited for only as long as the transaction's ``lock_timeout``: a session
    that still holds it (an invocation killed mid-write whose session the server has not ended
    yet) makes this answer None, "busy", like a held lease. The wait runs under a savepoint, so
    the caller's transaction stays usable and commits as usual after a busy answer.
    """
    cur = conn.cursor()
    cur.execute(f"SAVEPOINT {_LEASE_SAVEPOINT}")
    try:
        cur.execute(
            "UPDATE sync_status SET lease_owner = %s, lease_expires_at = clock_timestamp() + make_interval(secs => %s)"
            " WHERE entity_type = %s AND (lease_owner IS NULL OR lease_expires_at < clock_timestamp())"
            " RETURNING *",
            (str(owner), seconds, ENTITY),
        )
    except DatabaseError as err:
        if sqlstate_of(err) == LOCK_NOT_AVAILABLE:
            cur.execute(f"ROLLBACK TO SAVEPOINT {_LEASE_SAVEPOINT}")
            return None
        raise
    row = _by_name(cur)
    cur.execute(f"RELEASE SAVEPOINT {_LEASE_SAVEPOINT}")
    if row is not None:
        return SyncState.from_row(row)
    # No row updated: either the lease is held, or the row is gone and no lease ever will be.
    cur.execute("SELECT 1 FROM sync_status WHERE entity_type = %s", (ENTITY,))
    if cur.fetchone() is None:
        raise _missing_row()
    return None


def release_lease(conn: Connection, owner: uuid.UUID) -> None:
    """Give the lease back early (on a handled failure or a dropped message)."""
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_status SET lease_owner = NULL, lease_expires_at = NULL WHERE entity_type = %s AND lease_owner = %s",
        (ENTITY, str(owner)),
    )


def fence(conn: Connection, owner: uuid.UUID) -> None:
    """Lock the state row and prove we still hold the lease, before writing anything."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT lease_owner FROM sync_status WHERE entity_type = %s FOR UPDATE", (ENTITY,))
    except DatabaseError as err:
        if sqlstate_of(err) == LOCK_NOT_AVAILABLE:
            msg = "another session holds the sync_status row lock past lock_timeout; the message will be redelivered"
            raise LeaseBusyError(msg) from err
        raise
    row = cur.fetchone()
    if row is None or row[0] is None or str(row[0]) != str(owner):
        msg = f"lease lost before commit (held by {row[0] if row else None}); another invocation took over"
        raise StaleLeaseError(msg)


def read_state(conn: Connection) -> SyncState:
    """The stored state, without taking the lease (the dry run reads it this way)."""
    cur = conn.cursor()
    cur.execute("SELECT * FROM sync_status WHERE entity_type = %s", (ENTITY,))
    row = _by_name(cur)
    if row is None:
        raise _missing_row()
    return SyncState.from_row(row)


def _missing_row() -> StateRowMissingError:
    return StateRowMissingError(
        f"sync_status has no {ENTITY!r} row, so no run can be planned or leased; run `python -m sync migrate` to restore it"
    )


def mark_failed(conn: Connection, owner: uuid.UUID, error: str, *, abandon_run: bool = False) -> None:
    """Record a permanent failure and free the lease.

    The run in progress keeps its stored cursor, so the next tick resumes it, unless
    ``abandon_run``: then it is dropped and the next tick starts afresh from the watermark.
    """
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_status SET status = 'failed', last_error = %s, updated_at = now(),"
        " run_id = CASE WHEN %s THEN NULL ELSE run_id END,"
        " run_next_page = CASE WHEN %s THEN NULL ELSE run_next_page END,"
        " lease_owner = NULL, lease_expires_at = NULL"
        " WHERE entity_type = %s AND (lease_owner IS NULL OR lease_owner = %s)",
        (storable.text(error)[:2000], abandon_run, abandon_run, ENTITY, str(owner)),
    )


@dataclass(frozen=True)
class PageProgress:
    """Where a committed page leaves its run; written in the page's own transaction."""

    plan: PagePlan
    opportunities: Stream
    links: Stream
    # What the watermarks become if this page ends the run.
    watermark: dt.datetime | None
    link_watermark: dt.datetime | None
    written: int
    skipped: int
    # The page size limit after this page (None: back to SYNC_PAGE_SIZE).
    page_size_limit: int | None = None
    # The probe's marks of this run; they become the committed marks when it ends.
    run_marks: Mapping[str, Mark] | None = None
    # A full run whose recorded ids still cover everything it read.
    ids_complete: bool = False
    # Streams whose stored watermark lay beyond the source's clock: dropped now, not at the end.
    repaired: frozenset[StreamKind] = frozenset()
    # Both streams read to the run's bound (PageRead.run_done).
    run_done: bool = False


def record_page(conn: Connection, progress: PageProgress) -> None:
    """Store the cursor (or, when the run is done, the new watermarks) and free the lease."""
    assignments, params = _page_assignments(progress)
    cur = conn.cursor()
    cur.execute(
        f"UPDATE sync_status SET {', '.join(assignments)}, last_error = NULL, page_attempts = 0, page_attempt_size = NULL,"
        " lease_owner = NULL, lease_expires_at = NULL, updated_at = now() WHERE entity_type = %s",
        (*params, ENTITY),
    )
    if progress.plan.resync_message_id is not None:
        _remember_resync(conn, progress.plan.resync_message_id)


# Pub/Sub retains an unacknowledged message for at most 7 days; a day more covers clock skew
# and a redelivery in flight at the deadline. After that no copy of the message can arrive.
RESYNC_MEMORY_DAYS = 8


def resync_started(conn: Connection, message_id: str | None, requested_at: dt.datetime | None = None) -> bool:
    """Whether a full resync was already started for this request: for this Pub/Sub message (a
    redelivery), or, for a request replayed from the dead letters (``requested_at`` set), at or after
    the moment it was first published. A replay has a new message id, and the resync it asked for
    may have started under the old one before the message was dead-lettered."""
    if message_id is None and requested_at is None:
        return False
    cur = conn.cursor()
    cur.execute(
        "SELECT 1 FROM sync_resync_messages WHERE started_at >= now() - make_interval(days => %s)"
        " AND (message_id = %s OR started_at >= %s) LIMIT 1",
        (RESYNC_MEMORY_DAYS, message_id, requested_at),
    )
    return cur.fetchone() is not None


def _remember_resync(conn: Connection, message_id: str) -> None:
    # Written with the run's first page, so a crash before that commit leaves the message
    # unremembered and its redelivery starts the run. Forgetting happens here too: the set
    # only grows when an operator starts a resync, and stays bounded by what 8 days hold.
    cur = conn.cursor()
    cur.execute("DELETE FROM sync_resync_messages WHERE started_at < now() - make_interval(days => %s)", (RESYNC_MEMORY_DAYS,))
    cur.execute(
        "INSERT INTO sync_resync_messages (message_id) VALUES (%s) ON CONFLICT (message_id) DO UPDATE SET started_at = now()",
        (message_id,),
    )


def record_attempt(conn: Connection, owner: uuid.UUID, number: int, size: int, limit: int | None) -> None:
    """Before the read: this is attempt ``number`` at the next page, read at ``size`` rows.

    Committed on its own, so it stays, counting as a death, if the invocation is killed; the
    page's commit clears it (:func:`record_page`) and a failure the invocation sees re-weighs it
    (:func:`weigh_attempt`).
    """
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_status SET page_attempts = %s, page_attempt_size = %s, page_size_limit = %s"
        " WHERE entity_type = %s AND lease_owner = %s",
        (number, size, limit, ENTITY, str(owner)),
    )


def weigh_attempt(conn: Connection, owner: uuid.UUID, weight: int) -> None:
    """The invocation lived to see its attempt fail: it counts ``weight`` against the page, not one death.

    Only while it still holds the lease: a successor's record is not this invocation's to change.
    """
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_status SET page_attempts = greatest(0, page_attempts - 1 + %s),"
        " page_attempt_size = CASE WHEN page_attempts - 1 + %s > 0 THEN page_attempt_size END"
        " WHERE entity_type = %s AND lease_owner = %s",
        (weight, weight, ENTITY, str(owner)),
    )


def _page_assignments(p: PageProgress) -> tuple[list[str], list[Any]]:
    plan, done = p.plan, p.run_done
    values: dict[str, Any] = {
        "run_id": None if done else str(plan.run_id),
        "run_trigger": None if done else plan.trigger,
        "run_next_page": None if done else plan.page + 1,
        **_stream_values(_OPPORTUNITIES, None if done else p.opportunities),
        **_stream_values(_LINKS, None if done else p.links),
        "status": "success" if done else "running",
    }
    if done:
        values["last_sync_timestamp"] = p.watermark
        values["link_watermark"] = p.link_watermark
    else:
        # A repaired watermark goes at once: a run that never ends must not leave it standing.
        if StreamKind.OPPORTUNITIES in p.repaired:
            values["last_sync_timestamp"] = None
        if StreamKind.CALL_LINKS in p.repaired:
            values["link_watermark"] = None
    values["run_ids_complete"] = p.ids_complete and not done
    assignments = [f"{name} = %s" for name in values]
    params = list(values.values())
    marks = marks_json(p.run_marks) if p.run_marks is not None else None
    if done:
        assignments += ["source_marks = %s::jsonb", "run_source_marks = NULL"]
        params.append(marks)
    elif plan.new_run:
        assignments.append("run_source_marks = %s::jsonb")
        params.append(marks)
    # A new run restarts the per-run counters; a later page adds to them.
    counted = ("items_synced", p.written), ("error_count", p.skipped)
    assignments += [f"{name} = %s" if plan.new_run else f"{name} = {name} + %s" for name, _ in counted]
    params += [n for _, n in counted]
    if plan.new_run:
        assignments.append("run_started_at = now()")
    if done:
        assignments.append("last_success_at = now()")
    assignments.append("page_size_limit = %s")
    params.append(p.page_size_limit)
    return assignments, params


def _stream_values(columns: _StreamColumns, stream: Stream | None) -> dict[str, Any]:
    if stream is None:  # no run in progress: nothing to resume
        return dict.fromkeys(columns.names()) | {columns.done: False}
    job = stream.result
    return {
        columns.upper_bound: stream.upper_bound,
        columns.cursor_stamp: stream.cursor.stamp,
        columns.cursor_key: stream.cursor.key,
        columns.done: stream.done,
        columns.job_project: job.job.project if job else None,
        columns.job_location: job.job.location if job else None,
        columns.job_id: job.job.job_id if job else None,
        columns.job_offset: job.offset if job else None,
    }
