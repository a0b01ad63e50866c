"""Rows Postgres refused: what to try instead, how they are recorded, and remembering them.

``sync/postgres/isolate.py`` finds a row Postgres refuses; this module says what happens to it:

- **repair**: the row is tried again with one value NULL, for each nullable data column that
  holds one (``stored.NULLABLE``), the column the error names first. The first that writes is
  kept and the row counts as degraded; if none does, the row is skipped. A call link has no
  nullable column: it is skipped.
- **record**: an :class:`~sync.rows.transform.Issue` with reason ``refused_by_postgres``, the
  SQLSTATE, table, column and constraint, and a bounded excerpt of the nulled value; never the
  server's message or detail, which quote row contents.
- **died**: a one-row page that kept timing out or killing its invocation (``sync/run/pacing.py``)
  is refused without being written, with reason ``page_died``, and remembered the same way.
- **remember**: the refusal is kept in ``sync_refused_rows`` under the digest of the row's
  content. When the same content is read again (the lookback, a full resync) it gets the same
  outcome without being sent to Postgres, so the next run does not trip on it. A degraded row
  keeps the digest of its source content, so re-reading it is "unchanged" anyway.

Functions that touch the database run inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.core.errors import DataErrorInfo
from sync.postgres.db import Connection
from sync.postgres.isolate import Refusal
from sync.rows import limits, storable, stored
from sync.rows.limits import excerpt
from sync.rows.parse import jsonable
from sync.rows.stored import OpportunityRow
from sync.rows.transform import Issue, LinkRow

REASON = "refused_by_postgres"
# A one-row page that timed out or killed its invocation too often (sync/run/pacing.py).
DIED = "page_died"

Item = OpportunityRow | LinkRow

# Index name -> its key columns: a 54000 names the index, not the column.
_INDEX_COLUMNS = {index.name: tuple(name for name, _ in index.columns) for index in limits.INDEXES}
_NULLABLE = tuple(c.name for c in stored.NULLABLE)


def repairs(item: Item, error: DataErrorInfo) -> Iterator[tuple[str, Item]]:
    """Variants of a refused row with one value NULL, the most likely culprit first."""
    if not isinstance(item, OpportunityRow):
        return
    named = (error.column, *_INDEX_COLUMNS.get(error.constraint or "", ()))
    ordered = [c for c in named if c in _NULLABLE] + [c for c in _NULLABLE if c not in named]
    for column in dict.fromkeys(ordered):
        if item[column] is not None:
            yield column, item.with_null(column)


def digest(item: Item) -> bytes:
    """What a refusal is remembered by: the row's content digest, or one over the link."""
    if isinstance(item, OpportunityRow):
        return item.content_hash
    text = f"{item.call_id}\x1f{item.gong_opportunity_id}\x1f{'t' if item.deleted else 'f'}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def issue(item: Item, error: dict[str, Any], nulled: str | None) -> Issue:
    """The rejection record of a refused row or link."""
    values: dict[str, Any] = dict(error)
    reason = str(values.pop("reason", REASON))
    if isinstance(item, LinkRow):
        return Issue(excerpt(item.gong_opportunity_id), "skipped", reason, {**values, "call_id": excerpt(item.call_id)})
    if nulled is None:
        return Issue(excerpt(item.source_id), "skipped", reason, values)
    refused_value = jsonable(item[nulled])
    values.update(nulled=nulled, **{nulled: excerpt(refused_value) if isinstance(refused_value, str) else refused_value})
    return Issue(excerpt(item.source_id), "degraded", REASON, values)


def error_fields(error: DataErrorInfo) -> dict[str, str]:
    """The error as it is recorded: only the fields Postgres sent."""
    fields = {"sqlstate": error.sqlstate, "table": error.table, "column": error.column, "constraint": error.constraint}
    return {key: value for key, value in fields.items() if value is not None}


@dataclass
class Recalled:
    """A page after applying remembered refusals: what to write, and what was refused from memory."""

    rows: list[OpportunityRow]
    links: list[LinkRow]
    issues: list[Issue] = field(default_factory=list)


def remembers_any(conn: Connection) -> bool:
    """Whether any refusal is remembered: when none is, no page needs recalling."""
    cur = conn.cursor()
    cur.execute("SELECT EXISTS (SELECT 1 FROM sync_refused_rows)")
    probe = cur.fetchone()
    return probe is not None and bool(probe[0])


def recall(conn: Connection, rows: Sequence[OpportunityRow], links: Sequence[LinkRow]) -> Recalled:
    """Give remembered rows their remembered outcome before anything is sent to Postgres."""
    if not rows and not links:
        return Recalled([], [])
    # Usually empty: one cheap probe spares every page the look-up of its digests.
    if not remembers_any(conn):
        return Recalled(list(rows), list(links))
    cur = conn.cursor()
    cur.execute(
        "SELECT content_hash, nulled_column, error FROM sync_refused_rows WHERE content_hash = ANY(%s)",
        ([r.content_hash for r in rows] + [digest(link) for link in links],),
    )
    known = {bytes(key): (nulled, _json(error)) for key, nulled, error in cur.fetchall()}
    result = Recalled([], [])
    for row in rows:
        hit = known.get(row.content_hash)
        if hit is None:
            result.rows.append(row)
            continue
        nulled, error = hit
        result.issues.append(issue(row, {**error, "remembered": True}, nulled))
        if nulled is not None:
            result.rows.append(row.with_null(nulled))
    for link in links:
        hit = known.get(digest(link))
        if hit is None:
            result.links.append(link)
        else:
            result.issues.append(issue(link, {**hit[1], "remembered": True}, None))
    return result


def remember(conn: Connection, refusals: Sequence[Refusal[Item]]) -> list[Issue]:
    """Keep each refusal for the next read of the same content; returns their rejection records."""
    if not refusals:
        return []
    cur = conn.cursor()
    records = []
    for refusal in refusals:
        fields = error_fields(refusal.error)
        records.append(issue(refusal.item, fields, refusal.repair))
        cur.execute(
            "INSERT INTO sync_refused_rows (content_hash, nulled_column, error) VALUES (%s, %s, %s::jsonb)"
            " ON CONFLICT (content_hash) DO UPDATE SET nulled_column = EXCLUDED.nulled_column, error = EXCLUDED.error,"
            " refused_at = now()",
            (digest(refusal.item), refusal.repair, storable.json_text(fields)),
        )
    return records


def refuse_unwritten(conn: Connection, items: Sequence[Item], attempts: int) -> list[Issue]:
    """Refuse a one-row page that ended ``attempts`` invocations, without sending it to Postgres.

    Remembered like any refusal, so the lookback or a full resync re-reading the same content
    skips it at once instead of dying on it again; forgotten with the rejections.
    """
    error = {"reason": DIED, "attempts": attempts}
    cur = conn.cursor()
    for item in items:
        cur.execute(
            "INSERT INTO sync_refused_rows (content_hash, nulled_column, error) VALUES (%s, NULL, %s::jsonb)"
            " ON CONFLICT (content_hash) DO UPDATE SET nulled_column = NULL, error = EXCLUDED.error, refused_at = now()",
            (digest(item), storable.json_text(error)),
        )
    return [issue(item, error, None) for item in items]


def expire(conn: Connection, days: int) -> None:
    """Forget refusals as old as the rejection records; a row still bad is isolated once more."""
    cur = conn.cursor()
    cur.execute("DELETE FROM sync_refused_rows WHERE refused_at < now() - make_interval(days => %s)", (days,))


def _json(value: Any) -> dict[str, Any]:
    # pg8000 returns jsonb already decoded; a text fallback keeps this independent of that.
    decoded = json.loads(value) if isinstance(value, str) else value
    return dict(decoded) if isinstance(decoded, dict) else {}
