"""Postgres writes for one page: rows, links and rejections, inside the caller's transaction.

Write path: one look-up of the page's stored content hashes sorts its rows three ways. A row
whose hash is unchanged is not sent at all, so an unchanged re-read writes no tuple, takes no
row lock and burns no sequence value. A live row Postgres does not hold is copied straight into
``opportunities`` (COPY from a generator): a first load costs what COPY costs, not a staging
copy and an ``INSERT ... SELECT`` on top. Only a row stored with other content goes through a
temp staging table and the merge, whose ``ON CONFLICT ... DO UPDATE ... WHERE (...) IS DISTINCT
FROM (...)`` stays the backstop; if a row raced in between the look-up and the copy (the lease
fence makes that a foreign writer), the copy is rolled back to its savepoint and those rows are
merged instead. The staging table, both COPY column lists and the merge are derived from the
declaration in ``sync/rows/stored.py``. The pipeline's pages arrive through
``sync/postgres/streamed.py``: a page Postgres holds none of is copied there while it is mapped
and reaches this module with its links only, and rows this module would leave alone (stored
with the same digest, or deleted and never stored) are counted there and not sent.

Rows and links are written by :func:`write_rows` under ``sync/postgres/isolate.py``: when Postgres
refuses a value, the page is bisected under savepoints and only the refused rows are left out
(or stored with the value NULL); ``sync/postgres/refused.py`` records and remembers them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field
from typing import Any

from sync.core.errors import sqlstate_of
from sync.postgres import refused
from sync.postgres.db import Connection, Cursor
from sync.postgres.isolate import write_isolating
from sync.postgres.transaction import bound
from sync.rows import encoding, storable, stored
from sync.rows.stored import Column, OpportunityRow, Role
from sync.rows.transform import Issue, LinkRow

_KEY, _DELETED, _HASH = stored.KEY.name, stored.DELETED.name, stored.HASH.name

_STAGE_DDL = (
    # No key: ids are unique per page already (transform_page).
    "CREATE TEMP TABLE IF NOT EXISTS stage_opportunities ("
    + ", ".join(f"{c.stage_name} {c.stage_type}" for c in stored.COPY_ORDER)
    + ") ON COMMIT DELETE ROWS;"
    f"CREATE TEMP TABLE IF NOT EXISTS stage_keys ({_KEY} text, {_HASH} bytea) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_links ("
    " call_id text, gong_opportunity_id text, deleted boolean, synced_at timestamptz,"
    " PRIMARY KEY (gong_opportunity_id, call_id)) ON COMMIT DELETE ROWS"
)
_COPY_OPPORTUNITIES = f"COPY stage_opportunities ({', '.join(c.stage_name for c in stored.COPY_ORDER)}) FROM STDIN"
COPY_NEW = f"COPY opportunities ({', '.join(c.name for c in stored.INSERT_ORDER)}) FROM STDIN"
_COPY_KEYS = f"COPY stage_keys ({_KEY}, {_HASH}) FROM STDIN"
# The page's rows Postgres does not hold with this content, and whether it holds them at all.
_TO_WRITE = f"""
SELECT k.{_KEY}, cur.id IS NOT NULL
FROM stage_keys k
LEFT JOIN opportunities cur ON cur.{_KEY} = k.{_KEY}
WHERE cur.{_HASH} IS DISTINCT FROM k.{_HASH}
"""
# A unique key already held: a row was stored between the look-up and the copy.
_UNIQUE_VIOLATION = "23505"


def _staged(c: Column) -> str:
    """The value the merge inserts for a column, read from the staging row ``s``."""
    if c.role is Role.DELETED:
        return f"CASE WHEN s.{c.stage_name} THEN now() END"
    if c.stage_type != c.pg_type:
        return f"s.{c.stage_name}::{c.pg_type}"
    return f"s.{c.stage_name}"


def _assignment(c: Column) -> str:
    if c.role is Role.DELETED:
        # Keep the first deletion time while the row stays deleted; clear it when it comes back.
        return f"{c.name} = CASE WHEN EXCLUDED.{c.name} IS NULL THEN NULL ELSE coalesce(t.{c.name}, EXCLUDED.{c.name}) END"
    return f"{c.name} = EXCLUDED.{c.name}"


def _compared(c: Column, alias: str) -> str:
    return f"{alias}.{c.name} IS NULL" if c.role is Role.DELETED else f"{alias}.{c.name}"


_UPDATED = [c for c in stored.COPY_ORDER if c.role is not Role.KEY]
_SEPARATOR = ",\n        "
_COMPARED = [c for c in stored.COPY_ORDER if c.compared]

_MERGE = f"""
WITH merged AS (
    INSERT INTO opportunities AS t ({", ".join(c.name for c in stored.COPY_ORDER)})
    SELECT {", ".join(_staged(c) for c in stored.COPY_ORDER)}
    FROM stage_opportunities s
    LEFT JOIN opportunities cur ON cur.{_KEY} = s.{_KEY}
    WHERE (cur.id IS NULL AND NOT s.{stored.DELETED.stage_name})
       OR (cur.id IS NOT NULL AND cur.{_HASH} IS DISTINCT FROM s.{_HASH})
    ON CONFLICT ({_KEY}) DO UPDATE SET
        {_SEPARATOR.join(_assignment(c) for c in _UPDATED)},
        updated_at = now()
    WHERE ({", ".join(_compared(c, "t") for c in _COMPARED)})
          IS DISTINCT FROM
          ({", ".join(_compared(c, "EXCLUDED") for c in _COMPARED)})
    RETURNING (t.xmax = 0) AS inserted, (t.{_DELETED} = now()) AS newly_deleted
)
SELECT count(*) FILTER (WHERE inserted),
       count(*) FILTER (WHERE NOT inserted AND newly_deleted IS NOT TRUE),
       count(*) FILTER (WHERE NOT inserted AND newly_deleted)
FROM merged
"""

# Links removed in Gong, and every link of an opportunity that is now soft-deleted.
_UNLINK = """
WITH gone AS (
    DELETE FROM call_links l USING stage_links s
    WHERE s.deleted AND l.gong_opportunity_id = s.gong_opportunity_id AND l.call_id = s.call_id
    RETURNING l.call_id, l.gong_opportunity_id
)
DELETE FROM call_opportunities co
USING opportunities o
WHERE co.opportunity_id = o.id
  AND ((o.deleted_at IS NOT NULL AND o.gong_opportunity_id IN (SELECT gong_opportunity_id FROM stage_keys))
       OR (o.gong_opportunity_id, co.call_id) IN (
            SELECT gong_opportunity_id, call_id FROM stage_links WHERE deleted))
"""

_REMEMBER_LINKS = """
INSERT INTO call_links (call_id, gong_opportunity_id, source_synced_at)
SELECT call_id, gong_opportunity_id, synced_at FROM stage_links WHERE NOT deleted
ON CONFLICT (gong_opportunity_id, call_id) DO NOTHING
"""

# A link lands once both ends exist: for links read now, and for opportunities read now
# whose links arrived on an earlier page.
_LINK = """
INSERT INTO call_opportunities (call_id, opportunity_id)
SELECT l.call_id, o.id
FROM call_links l
JOIN opportunities o ON o.gong_opportunity_id = l.gong_opportunity_id AND o.deleted_at IS NULL
WHERE l.gong_opportunity_id IN (SELECT gong_opportunity_id FROM stage_keys)
   OR (l.gong_opportunity_id, l.call_id) IN (SELECT gong_opportunity_id, call_id FROM stage_links WHERE NOT deleted)
ON CONFLICT (call_id, opportunity_id) DO NOTHING
"""


@dataclass
class WriteCounts:
    """What a page's write did with each row; ``purged`` (also counted in ``deleted``) is set by a full resync's end.

    Every staged row is counted once: ``inserted``, ``updated``, ``deleted`` (soft-deleted now),
    ``unchanged`` (stored already with the same content, a deleted one included), or
    ``not_stored`` (deleted in the source and never in Postgres, so there is nothing to write).
    """

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    links_added: int = 0
    links_removed: int = 0
    purged: int = 0
    not_stored: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass
class PageWrite:
    """What writing a page did: the counts, and the rows and links Postgres refused.

    ``refused`` holds their rejection records, already written to ``sync_rejections``; a
    refused row is counted as skipped, or as degraded when it was stored with a value NULL.
    """

    counts: WriteCounts
    refused: list[Issue] = field(default_factory=list)
    # Writes tried: 1 for a clean page, more when refused rows had to be isolated.
    attempts: int = 1


def write_page(
    conn: Connection,
    rows: Sequence[OpportunityRow],
    links: Sequence[LinkRow],
    issues: Sequence[Issue],
    run_id: str,
    *,
    deadline: float = math.inf,
) -> PageWrite:
    """Stage and merge one page inside the caller's open transaction (no commit here).

    Rows and links Postgres refuses are isolated until ``deadline`` (``time.monotonic()``),
    then :class:`~sync.core.errors.TimeBudgetError` is raised; the transaction is the caller's to
    roll back.
    """
    cur = conn.cursor()
    cur.execute(_STAGE_DDL)
    page = refused.recall(conn, rows, links)
    items: list[refused.Item] = [*page.rows, *page.links]
    written = write_isolating(conn, items, _RowWriter(conn, deadline), deadline=deadline, repairs=refused.repairs)
    counts = sum(written.results, WriteCounts())
    rejected = [*page.issues, *refused.remember(conn, written.refused)]
    record_rejections(conn, [*issues, *rejected], run_id)
    return PageWrite(counts, rejected, written.attempts)


def refuse_page(
    conn: Connection,
    rows: Sequence[OpportunityRow],
    links: Sequence[LinkRow],
    issues: Sequence[Issue],
    run_id: str,
    attempts: int,
) -> PageWrite:
    """Write nothing of a one-row page that ended ``attempts`` invocations: refuse and record it."""
    rejected = refused.refuse_unwritten(conn, [*rows, *links], attempts)
    record_rejections(conn, [*issues, *rejected], run_id)
    return PageWrite(WriteCounts(), rejected, 0)


class _RowWriter:
    """:func:`write_rows` for isolation: each call writes one subset of the page's rows and links."""

    def __init__(self, conn: Connection, deadline: float) -> None:
        self._conn = conn
        self._deadline = deadline
        self._calls = 0

    def __call__(self, items: Sequence[refused.Item]) -> WriteCounts:
        if self._deadline != math.inf:
            # statement_timeout counts per statement: each attempt gets what is left, not what
            # was left when the transaction began.
            bound(self._conn, self._deadline - time.monotonic())
        if self._calls:
            # An earlier attempt that wrote left its rows staged: each attempt merges its own.
            cur = self._conn.cursor()
            cur.execute("DELETE FROM stage_opportunities")
            cur.execute("DELETE FROM stage_keys")
            cur.execute("DELETE FROM stage_links")
        self._calls += 1
        rows = [i for i in items if isinstance(i, OpportunityRow)]
        links = [i for i in items if isinstance(i, LinkRow)]
        return write_rows(self._conn, rows, links)


def write_rows(conn: Connection, rows: Sequence[OpportunityRow], links: Sequence[LinkRow]) -> WriteCounts:
    """Store, merge and link ``rows`` and ``links``; the staging tables must exist and be empty."""
    cur = conn.cursor()
    counts = WriteCounts()
    if rows:
        new, changed, counts.not_stored = _sort(cur, rows)
        if new and _copy_new(cur, new):
            counts.inserted = len(new)
        else:
            changed = [*new, *changed]
        if changed:
            inserted, counts.updated, counts.deleted = _merge(cur, changed)
            counts.inserted += inserted
        counts.unchanged = len(rows) - counts.inserted - counts.updated - counts.deleted - counts.not_stored
    if links:
        cur.execute(
            "COPY stage_links (call_id, gong_opportunity_id, deleted, synced_at) FROM STDIN",
            stream=encoding.chunks(
                encoding.line((link.call_id, link.gong_opportunity_id, link.deleted, link.synced_at)) for link in links
            ),
        )
        cur.execute(_REMEMBER_LINKS)
    if rows or links:
        cur.execute(_UNLINK)
        counts.links_removed = cur.rowcount
        cur.execute(_LINK)
        counts.links_added = cur.rowcount
    return counts


def _sort(cur: Cursor, rows: Sequence[OpportunityRow]) -> tuple[list[OpportunityRow], list[OpportunityRow], int]:
    """The live rows Postgres does not hold, the rows it holds with other content, and how many
    rows were deleted in the source and never stored (nothing to write, and not "unchanged").

    Every row's key and digest are staged (``stage_keys``; link and unlink read the page's ids
    from there too), and Postgres answers with the rows to write: on an unchanged page, none.
    What is left out is what the merge would leave alone: an unchanged row, and a deleted row
    that was never stored.
    """
    lines = (f"{encoding.text(r.source_id)}\t\\\\x{r.content_hash.hex()}\n" for r in rows)
    cur.execute(_COPY_KEYS, stream=encoding.chunks(lines))
    cur.execute(_TO_WRITE)
    held: dict[str, bool] = {str(key): bool(stored_before) for key, stored_before in cur.fetchall()}
    new: list[OpportunityRow] = []
    changed: list[OpportunityRow] = []
    not_stored = 0
    for row in rows:
        stored_before = held.get(row.source_id)
        if stored_before is None:
            continue
        if stored_before:
            changed.append(row)
        elif not row.deleted:
            new.append(row)
        else:
            not_stored += 1
    return new, changed, not_stored


def _copy_new(cur: Cursor, rows: Sequence[OpportunityRow]) -> bool:
    """COPY live rows no stored row has into ``opportunities``; False when one raced in meanwhile.

    Any other error propagates unchanged: a refused value is ``sync/postgres/isolate.py``'s to find.
    """
    cur.execute("SAVEPOINT copy_new")
    try:
        cur.execute(COPY_NEW, stream=encoding.chunks(map(stored.insert_line, rows)))
    except Exception as err:
        if sqlstate_of(err) != _UNIQUE_VIOLATION:
            raise
        cur.execute("ROLLBACK TO SAVEPOINT copy_new")
        cur.execute("RELEASE SAVEPOINT copy_new")
        return False
    cur.execute("RELEASE SAVEPOINT copy_new")
    return True


def _merge(cur: Cursor, rows: Sequence[OpportunityRow]) -> tuple[int, int, int]:
    """Stage ``rows`` and merge them: (inserted, updated, deleted)."""
    cur.execute(_COPY_OPPORTUNITIES, stream=encoding.chunks(map(stored.copy_line, rows)))
    cur.execute(_MERGE)
    inserted, updated, deleted = (int(v) for v in _one(cur))
    return inserted, updated, deleted


def record_rejections(conn: Connection, issues: Sequence[Issue], run_id: str) -> None:
    """Add the page's skipped and degraded rows to ``sync_rejections``.

    The records are about values Postgres may have refused, and they are written outside row
    isolation: ids and values are stored as :mod:`sync.rows.storable` renders them (a NUL as
    ``\\x00``), so no record can fail the page.
    """
    if issues:
        conn.cursor().execute(
            "COPY sync_rejections (run_id, source_id, kind, reason, field_values) FROM STDIN",
            stream=encoding.chunks(
                encoding.line((run_id, _id(i.source_id), i.kind, i.reason, storable.json_text(i.values))) for i in issues
            ),
        )


def _one(cur: Cursor) -> Sequence[Any]:
    row = cur.fetchone()
    if row is None:  # an aggregate always returns a row; this is a driver fault
        msg = "expected one result row, got none"
        raise RuntimeError(msg)
    return row


def _id(source_id: str | None) -> str | None:
    return None if source_id is None else storable.text(source_id)
