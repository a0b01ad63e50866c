"""The full resync's purge: soft-delete what the source no longer holds, with one anti-join.

A full run reads every source id once, deleted-flagged and skipped rows included, from its
single evaluation. Each page records the raw ids it read into ``sync_run_source_ids`` in the
page's own transaction (COPY from a generator, so memory stays one page). When the run
completes, one statement soft-deletes every live row whose id the run never saw. Nothing
is held in the function's memory, whatever the size of the org.

The purge is refused, with a log line saying why, when the recorded ids may be incomplete:
the source was empty (far likelier a broken connector than a deleted CRM), the run began
before ids were recorded (an upgrade mid-run), or its result was evaluated again mid-run (a
row whose stamp fell behind the cursor in between would go unseen). Future-stamped rows are
read like any others (``sync/bigquery/slices.py``), so their ids are always among those recorded.

The purge is held, not run, when it would soft-delete more of the live replica than the delete
guard allows (``sync/postgres/guard.py``): a source that holds a tenth of its rows because a
Fivetran re-sync is in flight looks exactly like a deleted CRM until someone looks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync.postgres import holds
from sync.postgres.db import Connection
from sync.postgres.guard import Guard, HoldKind, judge, log_held
from sync.rows import encoding, storable

log = logging.getLogger(__name__)

# The hash is reset so that a row which reappears unchanged is still recognised as a change.
_PURGE = """
WITH purged AS (
    UPDATE opportunities o SET deleted_at = now(), updated_at = now(), content_hash = '\\x00'::bytea
    WHERE o.deleted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM sync_run_source_ids s WHERE s.run_id = %s AND s.source_id = o.gong_opportunity_id)
    RETURNING o.id
), unlinked AS (
    DELETE FROM call_opportunities co USING purged p WHERE co.opportunity_id = p.id RETURNING 1
)
SELECT (SELECT count(*) FROM purged), (SELECT count(*) FROM unlinked)
"""


# What _PURGE would soft-delete, counted before it runs.
_DOOMED = """
SELECT count(*) FROM opportunities o
WHERE o.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM sync_run_source_ids s WHERE s.run_id = %s AND s.source_id = o.gong_opportunity_id)
"""


@dataclass(frozen=True)
class Purged:
    """Rows soft-deleted and call links dropped by the purge, or the rows it held instead."""

    rows: int = 0
    links: int = 0
    held: int = 0


def source_ids(rows: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """The raw ids of a page's source rows, as the source spelled them.

    An id Postgres text cannot hold (one with NUL) is never stored either (ids are taken exactly
    as the source has them), so it is left out rather than recorded altered, where it could
    shield a different stored row from the purge. The table has no index, so an id of any
    length is recorded: a btree's entry limit (54000) cannot refuse one.
    """
    ids = (str(row["id"]) for row in rows if row.get("id") is not None)
    return (i for i in ids if storable.fits_text(i))


def record(conn: Connection, run_id: uuid.UUID, ids: Iterable[str]) -> None:
    """Remember ids a full run read, inside the caller's transaction."""
    run = str(run_id)
    cur = conn.cursor()
    cur.execute(
        "COPY sync_run_source_ids (run_id, source_id) FROM STDIN",
        stream=encoding.chunks(f"{run}\t{encoding.text(i)}\n" for i in ids),
    )


def forget(conn: Connection) -> None:
    """Drop every recorded id: at a full run's start (leftovers of a superseded run) and end.

    DELETE, not TRUNCATE: a role with data access only (tables created by an admin) may not
    truncate, and a full resync must not fail at its last page for that.
    """
    conn.cursor().execute("DELETE FROM sync_run_source_ids")


def purge(conn: Connection, run_id: uuid.UUID, guard: Guard | None = None) -> Purged | None:
    """Soft-delete live rows the run never saw; None (and a log line) when the source was empty.

    With a ``guard``, a purge over its limit is recorded as held instead (``Purged.held``).
    """
    cur = conn.cursor()
    cur.execute("SELECT EXISTS (SELECT 1 FROM sync_run_source_ids WHERE run_id = %s)", (str(run_id),))
    row = cur.fetchone()
    if row is None or not row[0]:
        refuse(run_id, "the full resync found no opportunity ids in the source")
        return None
    if guard is not None and guard.percent is not None:
        held = _held(conn, guard, run_id)
        if held:
            return Purged(held=held)
    cur.execute(_PURGE, (str(run_id),))
    counts = cur.fetchone()
    if counts is None:  # an aggregate always returns a row; this is a driver fault
        msg = "purge returned no counts"
        raise RuntimeError(msg)
    return Purged(int(counts[0]), int(counts[1]))


def _held(conn: Connection, guard: Guard, run_id: uuid.UUID) -> int:
    """How many deletes the guard holds back from this purge (0: purge), recorded and logged."""
    cur = conn.cursor()
    cur.execute(_DOOMED, (str(run_id),))
    counted = cur.fetchone()
    doomed = int(counted[0]) if counted else 0
    verdict = judge(conn, guard, run_id, HoldKind.PURGE, doomed)
    if not verdict.hold:
        return 0
    hold_id, sample = holds.hold_purge(conn, verdict)
    log_held(verdict, hold_id, doomed, sample)
    return doomed


def record_page(conn: Connection, run_id: uuid.UUID, rows: Iterable[Mapping[str, Any]], *, first: bool) -> None:
    """A full run's page: remember the ids it read (the first page forgets any superseded run's)."""
    if first:
        forget(conn)
    record(conn, run_id, source_ids(rows))


def finish(conn: Connection, run_id: uuid.UUID, *, complete: bool, guard: Guard | None = None) -> Purged | None:
    """The end of a full run: purge if its recorded ids can be trusted (and ``guard`` allows), then forget them."""
    result = None
    if complete:
        result = purge(conn, run_id, guard)
    else:
        refuse(
            run_id,
            "the ids this full resync recorded may be incomplete (it began before ids were recorded,"
            " or its result was evaluated again); the next full resync purges",
        )
    forget(conn)
    return result


def note_incomplete(run_id: uuid.UUID, reason: str) -> None:
    """Say, when it happens, why this full resync will not purge."""
    log.warning(
        "this full resync will not purge: %s", reason, extra={"event": "purge_off", "run_id": str(run_id), "reason": reason}
    )


def refuse(run_id: uuid.UUID, reason: str) -> None:
    """Log that a completed full resync purges nothing, and why."""
    log.error("%s; not purging anything", reason, extra={"event": "purge_skipped", "run_id": str(run_id), "reason": reason})
