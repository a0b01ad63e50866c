"""The ``source_shape`` row: what the replica was built from, and what it already holds.

The shape itself is rendered and compared in ``sync/bigquery/shape.py``; here it is only JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sync.postgres.db import Connection


@dataclass(frozen=True)
class Held:
    """What the live replica holds that only a joined table could have given it (an upgrade's evidence)."""

    rows: int = 0
    account_names: bool = False
    owner_emails: bool = False
    stage_history: bool = False
    health_score: bool = False
    call_links: bool = False


def load(conn: Connection) -> Any | None:
    """The recorded shape as stored (a JSON object), or None before the first record."""
    cur = conn.cursor()
    cur.execute("SELECT shape FROM source_shape")
    row = cur.fetchone()
    if row is None:
        return None
    return json.loads(row[0]) if isinstance(row[0], str) else row[0]


def save(conn: Connection, shape: dict[str, Any], recorded_by: str) -> None:
    """Record ``shape``, replacing what was recorded; inside the caller's transaction."""
    conn.cursor().execute(
        "INSERT INTO source_shape (only_row, shape, recorded_by) VALUES (true, %s::jsonb, %s)"
        " ON CONFLICT (only_row) DO UPDATE SET shape = EXCLUDED.shape, recorded_by = EXCLUDED.recorded_by,"
        " recorded_at = now()",
        (json.dumps(shape, sort_keys=True), recorded_by),
    )


def recorded_at(conn: Connection) -> tuple[Any, str] | None:
    """When and by whom the shape was recorded, for ``status``."""
    cur = conn.cursor()
    cur.execute("SELECT recorded_at, recorded_by FROM source_shape")
    row = cur.fetchone()
    return (row[0], row[1]) if row else None


def held(conn: Connection) -> Held:
    """One pass over the live rows: does any carry a value only a joined table provides?"""
    cur = conn.cursor()
    cur.execute(
        "SELECT count(*), bool_or(account_name IS NOT NULL), bool_or(owner_email IS NOT NULL),"
        " bool_or(metadata ? 'stage_history'), bool_or(health_score IS NOT NULL),"
        " EXISTS (SELECT 1 FROM call_links)"
        " FROM opportunities WHERE deleted_at IS NULL"
    )
    row = cur.fetchone()
    if row is None:  # an aggregate always returns a row; this is a driver fault
        msg = "the held-rows query returned nothing"
        raise RuntimeError(msg)
    return Held(int(row[0]), bool(row[1]), bool(row[2]), bool(row[3]), bool(row[4]), bool(row[5]))
