"""Work asked of the next run: a full resync, or a re-read of streams from the beginning.

Operators (``python -m sync source --switch``), migrations (a new stored column) and the
source-shape check (a joined table that appeared) add requests; the next *new* run takes every
pending one in the transaction of its first page, so a crash before that commit leaves them
pending and a run in progress is never changed under its cursor.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sync.postgres.db import Connection

Kind = Literal["full_resync", "reread"]
STREAMS = ("opportunities", "call_links")


@dataclass(frozen=True)
class Request:
    id: int
    kind: Kind
    streams: tuple[str, ...]
    reason: str
    requested_by: str
    requested_at: dt.datetime


def add(conn: Connection, kind: Kind, *, reason: str, requested_by: str, streams: Sequence[str] | None = None) -> int:
    """Ask the next new run for ``kind``; returns the request's id. Inside the caller's transaction."""
    chosen = list(streams) if streams is not None else list(STREAMS)
    unknown = sorted(set(chosen) - set(STREAMS))
    if unknown or not chosen:
        msg = f"streams must be a non-empty subset of {', '.join(STREAMS)}; got {chosen!r}"
        raise ValueError(msg)
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO sync_requests (kind, streams, reason, requested_by) VALUES (%s, %s::text[], %s, %s) RETURNING id",
        (kind, "{" + ",".join(chosen) + "}", reason, requested_by),
    )
    row = cur.fetchone()
    if row is None:  # INSERT ... RETURNING always returns the row; this is a driver fault
        msg = "sync_requests insert returned no id"
        raise RuntimeError(msg)
    return int(row[0])


def pending(conn: Connection) -> list[Request]:
    """Every request no run has taken yet, oldest first."""
    cur = conn.cursor()
    cur.execute(
        "SELECT id, kind, streams, reason, requested_by, requested_at FROM sync_requests WHERE run_id IS NULL ORDER BY id"
    )
    return [Request(int(r[0]), r[1], tuple(r[2]), r[3], r[4], r[5]) for r in cur.fetchall()]


def take(conn: Connection, ids: Iterable[int], run_id: uuid.UUID) -> None:
    """Mark requests as taken by ``run_id``, in the transaction of its first page."""
    chosen = list(ids)
    if chosen:
        conn.cursor().execute(
            "UPDATE sync_requests SET run_id = %s WHERE run_id IS NULL AND id = ANY(%s::bigint[])",
            (str(run_id), "{" + ",".join(str(i) for i in chosen) + "}"),
        )
