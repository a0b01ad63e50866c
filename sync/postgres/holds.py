"""Held deletes, as recorded in ``sync_delete_holds``: what is held, and the operator's release.

One open hold per kind (a partial unique index): a later run that holds deletes of the same
kind adds to it. A hold of rows the source flags deleted keeps their ids (``sync_held_ids``), so
a row re-read by the lookback is counted once however many runs hold it; a held purge keeps a
sample of the ids it would have soft-deleted. Neither list is ever applied: a release approves
up to the held count and asks for a re-read (``sync/postgres/requests.py``) that derives the
deletes again from the source as it is then (``sync/postgres/guard.py``).

Every function runs inside the caller's transaction (``sync/postgres/transaction.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sync.postgres import requests
from sync.postgres.db import Connection
from sync.postgres.guard import Guard, GuardedPage, HoldKind, Verdict, log_held, page_deletes

# How many ids a hold shows an operator; the log line carries the same sample.
SAMPLE = 10

_OPEN = """
INSERT INTO sync_delete_holds AS h (kind, first_run_id, run_id, rows_held, run_deletes, live_rows, limit_rows)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (kind) WHERE released_at IS NULL DO UPDATE SET
    run_id = EXCLUDED.run_id, run_deletes = EXCLUDED.run_deletes, live_rows = EXCLUDED.live_rows,
    limit_rows = EXCLUDED.limit_rows, rows_held = EXCLUDED.rows_held, updated_at = now()
RETURNING h.id
"""
_ADD_IDS = """
INSERT INTO sync_held_ids (hold_id, source_id)
SELECT %s, jsonb_array_elements_text(%s::jsonb)
ON CONFLICT DO NOTHING
"""
_COUNT_IDS = f"""
UPDATE sync_delete_holds h SET
    rows_held = (SELECT count(*) FROM sync_held_ids i WHERE i.hold_id = h.id),
    sample_ids = ARRAY(SELECT source_id FROM sync_held_ids i WHERE i.hold_id = h.id ORDER BY source_id LIMIT {SAMPLE})
WHERE h.id = %s
RETURNING h.rows_held, h.sample_ids
"""
# What the purge would soft-delete, a few of them: the same anti-join as sync/postgres/purge.py.
_PURGE_SAMPLE = f"""
SELECT o.gong_opportunity_id FROM opportunities o
WHERE o.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM sync_run_source_ids s WHERE s.run_id = %s AND s.source_id = o.gong_opportunity_id)
ORDER BY 1 LIMIT {SAMPLE}
"""


def _open(conn: Connection, verdict: Verdict) -> int:
    run = str(verdict.run_id)
    cur = conn.cursor()
    cur.execute(
        _OPEN,
        (verdict.kind.value, run, run, verdict.deletes, verdict.before, verdict.live, verdict.limit or 0),
    )
    row = cur.fetchone()
    if row is None:  # INSERT ... ON CONFLICT DO UPDATE returns the row either way
        msg = "expected the hold's id, got none"
        raise RuntimeError(msg)
    return int(row[0])


def guard_page(conn: Connection, guard: Guard, run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> GuardedPage:
    """The page's source rows to write; the deletes the guard holds are left out, recorded and logged."""
    page = page_deletes(conn, guard, run_id, rows)
    if page.verdict is not None and page.held:
        hold_id, fresh, total, sample = hold_source_deletes(conn, page.verdict, page.held)
        log_held(page.verdict, hold_id, total, sample, fresh=fresh > 0)
    return page


def hold_source_deletes(conn: Connection, verdict: Verdict, ids: Sequence[str]) -> tuple[int, int, int, list[str]]:
    """Record ``ids`` as held: the hold's id, how many of them it did not hold yet, its distinct ids, a sample."""
    hold_id = _open(conn, verdict)
    cur = conn.cursor()
    cur.execute(_ADD_IDS, (hold_id, json.dumps(list(ids))))
    fresh = max(cur.rowcount, 0)
    cur.execute(_COUNT_IDS, (hold_id,))
    row = cur.fetchone()
    if row is None:
        msg = f"hold {hold_id} vanished inside its own transaction"
        raise RuntimeError(msg)
    return hold_id, fresh, int(row[0]), [str(i) for i in row[1] or []]


def hold_purge(conn: Connection, verdict: Verdict) -> tuple[int, list[str]]:
    """Record a full resync's purge as held (its count replaces an open one's); returns its id and a sample."""
    hold_id = _open(conn, verdict)
    cur = conn.cursor()
    cur.execute(_PURGE_SAMPLE, (str(verdict.run_id),))
    sample = [str(r[0]) for r in cur.fetchall()]
    cur.execute("UPDATE sync_delete_holds SET sample_ids = %s WHERE id = %s", (sample, hold_id))
    return hold_id, sample


_LIST = """
SELECT h.id, h.kind, h.rows_held, h.live_rows, h.limit_rows, h.run_deletes, h.first_run_id, h.run_id,
       h.held_at, h.updated_at, h.sample_ids, h.released_at, h.released_by, h.approved, h.request_id,
       r.run_id AS reread_run_id
FROM sync_delete_holds h
LEFT JOIN sync_requests r ON r.id = h.request_id
WHERE h.released_at IS NULL OR r.run_id IS NULL
   OR NOT EXISTS (SELECT 1 FROM sync_runs x WHERE x.run_id = r.run_id AND x.status <> 'running')
ORDER BY h.id
"""


def standing(conn: Connection) -> list[dict[str, Any]]:
    """Holds waiting for an operator, and released ones whose re-read has not finished yet."""
    cur = conn.cursor()
    cur.execute(_LIST)
    names = [d[0] for d in cur.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for row in rows:
        if row["released_at"] is None:
            row["state"] = "held"
        else:
            row["state"] = "released, re-read pending" if row["reread_run_id"] is None else "released, re-read running"
    return rows


@dataclass(frozen=True)
class Release:
    """What releasing one hold approved, and the re-read it asked for."""

    hold_id: int
    kind: HoldKind
    approved: int
    live_rows: int
    run_id: uuid.UUID
    request_id: int
    request_kind: str


class ReleaseRefusedError(ValueError):
    """The holds cannot be released now; the message says why and what to do."""


def release(conn: Connection, *, run_id: uuid.UUID | None, by: str, running: uuid.UUID | None) -> list[Release]:
    """Approve every open hold (or those ``run_id`` held) and ask for the re-read that re-derives them.

    ``running`` is the run in progress: a hold it is still adding to is not released under it.
    """
    cur = conn.cursor()
    cur.execute(
        "SELECT id, kind, rows_held, live_rows, run_id FROM sync_delete_holds WHERE released_at IS NULL"
        " AND (%s::uuid IS NULL OR run_id = %s::uuid OR first_run_id = %s::uuid) ORDER BY id FOR UPDATE",
        (*([str(run_id) if run_id else None] * 3),),
    )
    found = cur.fetchall()
    busy = [str(r[4]) for r in found if running is not None and str(r[4]) == str(running)]
    if busy:
        msg = f"run {busy[0]} is still in progress and may hold more; release its deletes once it has finished"
        raise ReleaseRefusedError(msg)
    return [_release_one(conn, row, by) for row in found]


def _release_one(conn: Connection, row: Sequence[Any], by: str) -> Release:
    hold_id, kind, held, live, run = int(row[0]), HoldKind(row[1]), int(row[2]), int(row[3]), uuid.UUID(str(row[4]))
    what: requests.Kind = "full_resync" if kind is HoldKind.PURGE else "reread"
    request_id = requests.add(
        conn,
        what,
        reason=f"release of {held} held deletes ({kind.value}, hold {hold_id}, run {run})",
        requested_by=by,
        streams=None if kind is HoldKind.PURGE else ["opportunities"],
    )
    cur = conn.cursor()
    cur.execute(
        "UPDATE sync_delete_holds SET released_at = now(), released_by = %s, approved = rows_held, request_id = %s WHERE id = %s",
        (by, request_id, hold_id),
    )
    # The ids were kept to count re-reads once; the re-read derives its own, so they go now.
    cur.execute("DELETE FROM sync_held_ids WHERE hold_id = %s", (hold_id,))
    return Release(hold_id, kind, held, live, run, request_id, what)
