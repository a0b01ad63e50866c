"""Postgres writes for one page: rows, links, rejections and state, in one transaction.

Write path (measured in FACTS.md): COPY from a generator into a temp staging table, then one
merge. The merge first drops rows whose stored content hash is unchanged, so an unchanged
re-read writes no tuple, takes no row lock and burns no sequence value; ``ON CONFLICT ... DO
UPDATE ... WHERE (...) IS DISTINCT FROM (...)`` is the backstop for a row that raced in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sync import encoding
from sync.db import Connection, Cursor
from sync.transform import Issue, LinkRow, OpportunityRow

_STAGE_DDL = (
    # No key and metadata as text: ids are unique per page already (transform_page), and only
    # rows that really changed pay for the jsonb parse, in the merge.
    "CREATE TEMP TABLE IF NOT EXISTS stage_opportunities ("
    " gong_opportunity_id text, name text, account_name text, owner_email text, stage text,"
    " close_date date, amount numeric(18,2), health_score numeric(5,2), metadata text, deleted boolean,"
    " source_modified_at timestamptz, content_hash bytea) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_links ("
    " call_id text, gong_opportunity_id text, deleted boolean, synced_at timestamptz,"
    " PRIMARY KEY (gong_opportunity_id, call_id)) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_source_ids (gong_opportunity_id text PRIMARY KEY) ON COMMIT DELETE ROWS"
)

# The first ten are transform.content_text's fields, in its order.
_STAGE_COLUMNS = (
    "gong_opportunity_id, name, account_name, owner_email, stage, close_date, amount, health_score,"
    " metadata, deleted, source_modified_at, content_hash"
)
_TARGET_COLUMNS = (
    "gong_opportunity_id, name, account_name, owner_email, stage, close_date, amount, health_score,"
    " metadata, deleted_at, source_modified_at, content_hash"
)
_DATA_COLUMNS = ("name", "account_name", "owner_email", "stage", "close_date", "amount", "health_score", "metadata")

_MERGE = f"""
WITH merged AS (
    INSERT INTO opportunities AS t ({_TARGET_COLUMNS})
    SELECT s.gong_opportunity_id, s.name, s.account_name, s.owner_email, s.stage, s.close_date, s.amount,
           s.health_score, s.metadata::jsonb, CASE WHEN s.deleted THEN now() END, s.source_modified_at, s.content_hash
    FROM stage_opportunities s
    LEFT JOIN opportunities cur ON cur.gong_opportunity_id = s.gong_opportunity_id
    WHERE (cur.id IS NULL AND NOT s.deleted)
       OR (cur.id IS NOT NULL AND cur.content_hash IS DISTINCT FROM s.content_hash)
    ON CONFLICT (gong_opportunity_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _DATA_COLUMNS)},
        source_modified_at = EXCLUDED.source_modified_at,
        content_hash = EXCLUDED.content_hash,
        deleted_at = CASE WHEN EXCLUDED.deleted_at IS NULL THEN NULL ELSE coalesce(t.deleted_at, EXCLUDED.deleted_at) END,
        updated_at = now()
    WHERE ({", ".join(f"t.{c}" for c in (*_DATA_COLUMNS, "content_hash"))}, t.deleted_at IS NULL)
          IS DISTINCT FROM
          ({", ".join(f"EXCLUDED.{c}" for c in (*_DATA_COLUMNS, "content_hash"))}, EXCLUDED.deleted_at IS NULL)
    RETURNING (t.xmax = 0) AS inserted, (t.deleted_at = now()) AS newly_deleted
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
  AND ((o.deleted_at IS NOT NULL AND o.gong_opportunity_id IN (SELECT gong_opportunity_id FROM stage_opportunities))
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
WHERE l.gong_opportunity_id IN (SELECT gong_opportunity_id FROM stage_opportunities)
   OR (l.gong_opportunity_id, l.call_id) IN (SELECT gong_opportunity_id, call_id FROM stage_links WHERE NOT deleted)
ON CONFLICT (call_id, opportunity_id) DO NOTHING
"""

# A completed full resync soft-deletes rows the source no longer has at all (purged from
# Salesforce's recycle bin, so they never got is_deleted). The hash is reset so that a row
# which reappears unchanged is still recognised as a change.
_PURGE = """
WITH purged AS (
    UPDATE opportunities o SET deleted_at = now(), updated_at = now(), content_hash = '\\x00'::bytea
    WHERE o.deleted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM stage_source_ids s WHERE s.gong_opportunity_id = o.gong_opportunity_id)
    RETURNING o.id
), unlinked AS (
    DELETE FROM call_opportunities co USING purged p WHERE co.opportunity_id = p.id RETURNING 1
)
SELECT (SELECT count(*) FROM purged), (SELECT count(*) FROM unlinked)
"""


@dataclass
class WriteCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    links_added: int = 0
    links_removed: int = 0
    purged: int = 0


def write_page(
    conn: Connection,
    rows: Sequence[OpportunityRow],
    links: Sequence[LinkRow],
    issues: Sequence[Issue],
    run_id: str,
    source_ids: Iterable[str] | None = None,
) -> WriteCounts:
    """Stage and merge one page inside the caller's open transaction (no commit here)."""
    cur = conn.cursor()
    cur.execute(_STAGE_DDL)
    counts = WriteCounts()
    if rows:
        cur.execute(
            f"COPY stage_opportunities ({_STAGE_COLUMNS}) FROM STDIN", stream=encoding.chunks(map(_opportunity_line, rows))
        )
        cur.execute(_MERGE)
        merged = _one(cur)
        counts.inserted, counts.updated, counts.deleted = (int(v) for v in merged)
        counts.unchanged = len(rows) - counts.inserted - counts.updated - counts.deleted
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
    if source_ids is not None:
        cur.execute(
            "COPY stage_source_ids (gong_opportunity_id) FROM STDIN ",
            stream=encoding.chunks(encoding.text(i) + "\n" for i in source_ids),
        )
        cur.execute(_PURGE)
        purged, unlinked = _one(cur)
        counts.purged, counts.deleted = int(purged), counts.deleted + int(purged)
        counts.links_removed += int(unlinked)
    if issues:
        cur.execute(
            "COPY sync_rejections (run_id, source_id, kind, reason, field_values) FROM STDIN",
            stream=encoding.chunks(encoding.line((run_id, i.source_id, i.kind, i.reason, _json(i.values))) for i in issues),
        )
    return counts


def _one(cur: Cursor) -> Sequence[Any]:
    row = cur.fetchone()
    if row is None:  # an aggregate always returns a row; this is a driver fault
        msg = "expected one result row, got none"
        raise RuntimeError(msg)
    return row


def _opportunity_line(row: OpportunityRow) -> str:
    modified = row.source_modified_at.isoformat() if row.source_modified_at is not None else encoding.NULL
    return f"{row.content_text}\t{modified}\t\\\\x{row.content_hash.hex()}\n"


def _json(value: Any) -> str:
    # jsonb rejects the \u0000 escape; a NUL inside a source string is dropped instead.
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":")).replace("\\u0000", "")
