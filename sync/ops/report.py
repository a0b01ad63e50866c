"""Read-only queries for operators: status, run history, rejected rows; and making them safe to print."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from sync.postgres import holds
from sync.postgres.db import Connection

# C0 and C1 controls and DEL, line and paragraph separators, and the bidi marks, embeddings,
# overrides and isolates: what can move the cursor, retitle or clear a terminal, or reorder text.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_RUN_PREFIX = re.compile(r"^[0-9a-f-]{8,36}$")


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\u202e``), for human output.

    Source values reach the CLI's tables (ids, error texts); printed raw, an id such as
    ``ESC]0;...BEL`` would rewrite the terminal. ``--json`` output is exact instead.
    """
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _rows(conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cur = conn.cursor()
    cur.execute(sql, params)
    names = [d[0] for d in cur.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    conn.rollback()
    return rows


def status(conn: Connection) -> dict[str, Any]:
    """The spec's summary row, the run in progress or the last run, and source lag."""
    summary = _rows(
        conn,
        "SELECT entity_type, status, last_sync_timestamp, items_synced, error_count, last_error, last_success_at,"
        " run_id, run_trigger, run_next_page, run_started_at, run_cursor_stamp, run_upper_bound,"
        # No lease at all is "not in flight", not unknown: one type (boolean) in --json.
        " coalesce(lease_expires_at > now(), false) AS in_flight, page_size_limit,"
        " extract(epoch FROM now() - last_sync_timestamp) AS lag_seconds"
        " FROM sync_status WHERE entity_type = 'opportunities'",
    )
    counts = _rows(
        conn,
        "SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS live, count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted,"
        " (SELECT count(*) FROM call_opportunities) AS call_links FROM opportunities",
    )
    last_runs = runs(conn, limit=1)
    shape = _rows(conn, "SELECT shape, recorded_by, recorded_at FROM source_shape")
    pending = _rows(conn, "SELECT id, kind, streams, reason, requested_at FROM sync_requests WHERE run_id IS NULL ORDER BY id")
    held = holds.standing(conn)
    conn.rollback()
    return {
        **(summary[0] if summary else {}),
        "opportunities": counts[0],
        "last_run": last_runs[0] if last_runs else None,
        "source_shape": shape[0] if shape else None,
        "pending_requests": pending,
        "held_deletes": held,
    }


def runs(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT run_id, trigger, status, started_at, finished_at, pages, rows_read, rows_inserted, rows_updated,"
        " rows_unchanged, rows_skipped, rows_degraded, rows_deleted,"
        " rows_deleted_not_stored, rows_held, links_added, links_removed, rows_future_stamped,"
        " smallest_page_size, bigquery_jobs, bigquery_bytes_processed, bigquery_bytes_billed, error"
        " FROM sync_runs ORDER BY started_at DESC LIMIT %s",
        (limit,),
    )


class UnknownRunError(ValueError):
    """``--run`` names no run, or more than one."""


def run_id_from(conn: Connection, text: str) -> uuid.UUID:
    """The run whose id is ``text`` or starts with it (the 8 characters ``runs`` shows are enough)."""
    prefix = text.strip().lower()
    if not _RUN_PREFIX.match(prefix):
        msg = f"--run must be a run id or its first 8 or more characters (0-9, a-f, -), got {printable(text)!r}"
        raise UnknownRunError(msg)
    found = _rows(conn, "SELECT run_id FROM sync_runs WHERE run_id::text LIKE %s ORDER BY run_id LIMIT 2", (prefix + "%",))
    if len(found) != 1:
        what = "no run id" if not found else "more than one run id"
        msg = f"{what} starts with {prefix!r}; see python -m sync runs --wide"
        raise UnknownRunError(msg)
    return uuid.UUID(str(found[0]["run_id"]))


def rejections(conn: Connection, run_id: uuid.UUID | None = None, limit: int = 100) -> list[dict[str, Any]]:
    if run_id is None:
        return _rows(
            conn,
            "SELECT run_id, source_id, kind, reason, field_values, rejected_at FROM sync_rejections"
            " ORDER BY rejected_at DESC, id DESC LIMIT %s",
            (limit,),
        )
    return _rows(
        conn,
        "SELECT run_id, source_id, kind, reason, field_values, rejected_at FROM sync_rejections"
        " WHERE run_id = %s ORDER BY id LIMIT %s",
        (str(run_id), limit),
    )


def jsonable(value: Any) -> Any:
    """Values as JSON-friendly scalars for ``--json`` output."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "as_integer_ratio") and not isinstance(value, (int, float)):
        return float(value)
    return value
