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
  content, with the row's id: a page's write looks its ids up (:data:`REMEMBERED`) before any
  row is mapped. When the same content is read again (the lookback, a full resync) it gets the
  same outcome without being sent to Postgres, so the next run does not trip on it. A degraded
  row keeps the digest of its source content, so re-reading it is "unchanged" anyway.

Functions that touch the database run inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.core.errors import DataErrorInfo
from sync.postgres.db import Connection, one_row
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
_REMEMBER = (
    "INSERT INTO sync_refused_rows (content_hash, source_id, nulled_column, error) VALUES (%s, %s, %s, %s::jsonb)"
    " ON CONFLICT (content_hash) DO UPDATE SET source_id = EXCLUDED.source_id, nulled_column = EXCLUDED.nulled_column,"
    " error = EXCLUDED.error, refused_at = now()"
)


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


# The refusals remembered for a page's ids (its rows' and its links' opportunities), as one JSON
# array; a refusal remembered before migration 0010 has no id and answers for every page until
# it expires. ``{ids}`` is a query that yields the ids.
REMEMBERED_FOR = """
SELECT json_agg(json_build_array(encode(content_hash, 'hex'), nulled_column, error))
FROM sync_refused_rows
WHERE source_id IS NULL OR source_id IN ({ids})
"""
# The same with the id list as the statement's only parameter.
REMEMBERED = REMEMBERED_FOR.format(ids="SELECT jsonb_array_elements_text(%s::jsonb)")

# A remembered refusal by the digest of the content refused: the column nulled (None: skipped), the error.
Memory = dict[bytes, tuple[str | None, dict[str, Any]]]


def memory(remembered: Any) -> Memory:
    """The refusals :data:`REMEMBERED` returned, by digest."""
    return {bytes.fromhex(key): (nulled, _json(error)) for key, nulled, error in remembered or ()}


def recall_row(row: OpportunityRow, known: Memory, issues: list[Issue]) -> OpportunityRow | None:
    """The row to write instead of ``row`` (None: nothing), adding a remembered refusal to ``issues``."""
    hit = known.get(row.content_hash)
    if hit is None:
        return row
    nulled, error = hit
    issues.append(issue(row, {**error, "remembered": True}, nulled))
    return row.with_null(nulled) if nulled is not None else None


def recall_links(links: Sequence[LinkRow], known: Memory, issues: list[Issue]) -> list[LinkRow]:
    """The links to write: a remembered one is refused again, added to ``issues``."""
    kept = []
    for link in links:
        hit = known.get(digest(link))
        if hit is None:
            kept.append(link)
        else:
            issues.append(issue(link, {**hit[1], "remembered": True}, None))
    return kept


@dataclass
class Recalled:
    """Rows and links after applying remembered refusals: what to write, and what was refused from memory."""

    rows: list[OpportunityRow]
    links: list[LinkRow]
    issues: list[Issue] = field(default_factory=list)


def recall(conn: Connection, rows: Sequence[OpportunityRow], links: Sequence[LinkRow]) -> Recalled:
    """Give remembered rows their remembered outcome, as a page's write does (``sync/ops/verify.py``)."""
    cur = conn.cursor()
    ids = [*(r.source_id for r in rows), *(link.gong_opportunity_id for link in links)]
    cur.execute(REMEMBERED, (json.dumps([i for i in ids if "\x00" not in i]),))
    known = memory(one_row(cur, "the refusals look-up")[0])
    result = Recalled([], [])
    for row in rows:
        kept = recall_row(row, known, result.issues)
        if kept is not None:
            result.rows.append(kept)
    result.links = recall_links(links, known, result.issues)
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
        cur.execute(_REMEMBER, (digest(refusal.item), _id(refusal.item), refusal.repair, storable.json_text(fields)))
    return records


def refuse_unwritten(conn: Connection, items: Sequence[Item], attempts: int) -> list[Issue]:
    """Refuse a one-row page that ended ``attempts`` invocations, without sending it to Postgres.

    Remembered like any refusal, so the lookback or a full resync re-reading the same content
    skips it at once instead of dying on it again; forgotten with the rejections.
    """
    error = {"reason": DIED, "attempts": attempts}
    cur = conn.cursor()
    for item in items:
        cur.execute(_REMEMBER, (digest(item), _id(item), None, storable.json_text(error)))
    return [issue(item, error, None) for item in items]


def expire(conn: Connection, days: int) -> None:
    """Forget refusals as old as the rejection records; a row still bad is isolated once more."""
    cur = conn.cursor()
    cur.execute("DELETE FROM sync_refused_rows WHERE refused_at < now() - make_interval(days => %s)", (days,))


def _id(item: Item) -> str | None:
    """The id a refusal is looked up by: the row's, or the link's opportunity's (NUL: never looked up)."""
    key = item.source_id if isinstance(item, OpportunityRow) else item.gong_opportunity_id
    return key if storable.fits_text(key) else None


def _json(value: Any) -> dict[str, Any]:
    # pg8000 returns jsonb already decoded; a text fallback keeps this independent of that.
    decoded = json.loads(value) if isinstance(value, str) else value
    return dict(decoded) if isinstance(decoded, dict) else {}
