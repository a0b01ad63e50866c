"""Postgres writes for one page: one look-up, each row sorted once, rows and links written.

Inside the caller's transaction, a page is written in four steps:

1. **Look up** the page's ids in one round trip, before any row is mapped: the content digest
   stored under each and the refusals remembered for them (``sync/postgres/refused.py``).
2. **Sort** each row as it is mapped: *unchanged* (stored with the same digest) and *not
   stored* (deleted in the source under an id Postgres does not hold) are only counted, so an
   unchanged re-read writes no tuple, takes no row lock and burns no sequence value; a row
   whose content Postgres refused before gets the remembered outcome without being sent; a
   *new* row is copied, a *changed* one merged.
3. **Write**: new rows are pulled through the mapping into ``COPY opportunities`` a chunk at a
   time, so the server stores one chunk while Python maps the next (a first load costs what
   COPY costs). Changed rows then go through a temp staging table and the merge, whose ``ON
   CONFLICT ... WHERE (...) IS DISTINCT FROM (...)`` is the backstop. One statement lands the
   links whose two ends exist, for the links read now and the rows written now (links read on
   an earlier page may wait for them); a page that writes no row pays nothing for links.
   Staging, both COPY column lists and the merge derive from ``sync/rows/stored.py``.
4. **Fall back** only after a data error: the write is rolled back to its savepoint and
   ``sync/postgres/refused.py`` bisects the sorted page, each part merged, leaving out (or
   storing with a value NULL) only the rows Postgres refuses. An id another writer stored
   between the look-up and the COPY (the lease fence makes that a foreign writer) is a unique
   violation and takes this path too: its first attempt merges the whole page.

A page with an id twice (the later row wins) is mapped whole and de-duplicated before it is
sorted: a stream cannot take a row back. The write returns the mapped page with its counts.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass, field

from sync.core.errors import data_error
from sync.postgres import refused
from sync.postgres.db import Connection, Cursor, one_row
from sync.postgres.isolate import write_isolating
from sync.postgres.transaction import bound
from sync.rows import encoding, storable, stored
from sync.rows.stored import Column, OpportunityRow, Role
from sync.rows.transform import Issue, LinkRow, PageMapping, PageResult

# Rows per COPY message (~60 KB). The first chunk's mapping and the last chunk's storing do not
# overlap, so smaller is better until a message's own cost shows (bench/README.md, third round).
CHUNK_ROWS = 50

_KEY, _DELETED, _HASH = stored.KEY.name, stored.DELETED.name, stored.HASH.name

# The page's ids travel as one JSON array and the digests come back as one JSON object:
# cheaper than staging the ids or returning a row per id, and exact for any string jsonb holds.
# The ids are sent once; the refusals look-up adds the links' opportunities (the second
# parameter, usually a few ids) to them.
_LOOK_UP = f"""
WITH page AS (SELECT jsonb_array_elements_text(%s::jsonb) AS id)
SELECT (SELECT json_object_agg(cur.{_KEY}, encode(cur.{_HASH}, 'hex'))
        FROM page JOIN opportunities cur ON cur.{_KEY} = page.id),
       ({refused.REMEMBERED_FOR.format(ids="SELECT id FROM page UNION ALL SELECT jsonb_array_elements_text(%s::jsonb)")})
"""
_STAGE = (
    # No key: ids are unique per page already (PageMapping.result). Emptied here, not only at
    # commit: an isolation attempt that wrote left its rows staged.
    "CREATE TEMP TABLE IF NOT EXISTS stage_opportunities ("
    + ", ".join(f"{c.stage_name} {c.stage_type}" for c in stored.COPY_ORDER)
    + ") ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_links ("
    " call_id text, gong_opportunity_id text, deleted boolean, synced_at timestamptz,"
    " PRIMARY KEY (gong_opportunity_id, call_id)) ON COMMIT DELETE ROWS;"
    "DELETE FROM stage_opportunities; DELETE FROM stage_links"
)
_COPY_STAGED = f"COPY stage_opportunities ({', '.join(c.stage_name for c in stored.COPY_ORDER)}) FROM STDIN"
_COPY_LINKS = "COPY stage_links (call_id, gong_opportunity_id, deleted, synced_at) FROM STDIN"
_COPY_NEW = f"COPY opportunities ({', '.join(c.name for c in stored.INSERT_ORDER)}) FROM STDIN"


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
        {_SEPARATOR.join(_assignment(c) for c in stored.COPY_ORDER if c.role is not Role.KEY)},
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
_REMEMBER_LINKS = """
INSERT INTO call_links (call_id, gong_opportunity_id, source_synced_at)
SELECT call_id, gong_opportunity_id, synced_at FROM stage_links WHERE NOT deleted
ON CONFLICT (gong_opportunity_id, call_id) DO NOTHING
"""
# Links removed in Gong, and every link of an opportunity of these ids that is now soft-deleted.
_UNLINK = f"""
WITH gone AS (
    DELETE FROM call_links l USING stage_links s
    WHERE s.deleted AND l.gong_opportunity_id = s.gong_opportunity_id AND l.call_id = s.call_id
)
DELETE FROM call_opportunities co
USING opportunities o
WHERE co.opportunity_id = o.id
  AND ((o.deleted_at IS NOT NULL AND o.{_KEY} IN (SELECT jsonb_array_elements_text(%s::jsonb)))
       OR (o.{_KEY}, co.call_id) IN (SELECT gong_opportunity_id, call_id FROM stage_links WHERE deleted))
"""
# A link lands once both ends exist, whichever page brought the last of them.
_LINK = f"""
INSERT INTO call_opportunities (call_id, opportunity_id)
SELECT l.call_id, o.id
FROM call_links l
JOIN opportunities o ON o.{_KEY} = l.gong_opportunity_id AND o.deleted_at IS NULL
WHERE l.gong_opportunity_id IN (SELECT jsonb_array_elements_text(%s::jsonb))
ON CONFLICT (call_id, opportunity_id) DO NOTHING
"""


@dataclass
class WriteCounts:
    """What a page's write did with each row; ``purged`` (also counted in ``deleted``) is set by a full resync's end.

    Every mapped row is counted once: ``inserted``, ``updated``, ``deleted`` (soft-deleted now),
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
    """What writing a page did: the mapped page, the counts, and the rows and links Postgres refused.

    ``refused`` holds their rejection records, already written to ``sync_rejections``; a
    refused row is counted as skipped, or as degraded when it was stored with a value NULL.
    """

    mapped: PageResult
    counts: WriteCounts
    refused: list[Issue] = field(default_factory=list)
    # Writes tried: 1 for a clean page, more when refused rows had to be isolated.
    attempts: int = 1


@dataclass(frozen=True)
class Held:
    """What Postgres holds for a page's ids, looked up before any row is mapped."""

    digests: dict[str, str]  # stored content digest (hex) by id, for the ids stored
    memory: refused.Memory  # refusals remembered for these ids
    unique: bool  # no id occurs twice in the page


def write_page(
    conn: Connection,
    mapping: PageMapping,
    links: Sequence[LinkRow],
    issues: Sequence[Issue],
    run_id: str,
    *,
    deadline: float = math.inf,
) -> PageWrite:
    """Map, sort and write one page inside the caller's open transaction (no commit here).

    ``issues`` are the page's other rejections (its links', its future stamps); the mapping's
    own are recorded ahead of them. Rows and links Postgres refuses are isolated until
    ``deadline`` (``time.monotonic()``), then :class:`~sync.core.errors.TimeBudgetError` is
    raised; the transaction is the caller's to roll back.
    """
    cur = conn.cursor()
    held = look_up(cur, mapping, links)
    page = _Sorted(held)
    links = refused.recall_links(links, held.memory, page.remembered)
    new = page.new_of(mapping.rows() if held.unique else iter(mapping.result().rows))
    _bound(conn, deadline)
    cur.execute("SAVEPOINT write_page")
    try:
        counts, attempts, refusals = _write(cur, new, page, links), 1, []
    except Exception as err:
        if data_error(err) is None:
            raise
        cur.execute("ROLLBACK TO SAVEPOINT write_page")
        page.finish(new)
        items: list[refused.Item] = [*page.new, *page.changed, *links]
        written = write_isolating(conn, items, _Part(conn, deadline), deadline=deadline, repairs=refused.repairs)
        counts, attempts, refusals = sum(written.results, WriteCounts()), 1 + written.attempts, written.refused
    cur.execute("RELEASE SAVEPOINT write_page")
    mapped = mapping.result()
    rejected = [*page.remembered, *refused.remember(conn, refusals)]
    record_rejections(conn, [*mapped.issues, *issues, *rejected], run_id)
    return PageWrite(mapped, counts + page.counts, rejected, attempts)


def refuse_page(
    conn: Connection,
    mapping: PageMapping,
    links: Sequence[LinkRow],
    issues: Sequence[Issue],
    run_id: str,
    attempts: int,
    *,
    deadline: float = math.inf,
) -> PageWrite:
    """Write a one-row page whose attempts weigh ``attempts`` without its row: refuse and record it.

    The suspects are the row and its own links. The page's other links belong to opportunities
    the link stream reached beside it, so they are written as usual; a page of links alone
    refuses them.
    """
    mapped = mapping.result()
    suspects = {i for i in mapping.ids() if i is not None}
    blamed = [link for link in links if not suspects or link.gong_opportunity_id in suspects]
    kept = [link for link in links if suspects and link.gong_opportunity_id not in suspects]
    rejected = refused.refuse_unwritten(conn, [*mapped.rows, *blamed], attempts)
    rest = write_page(conn, PageMapping([]), kept, [*mapped.issues, *issues, *rejected], run_id, deadline=deadline)
    return PageWrite(mapped, rest.counts, [*rejected, *rest.refused], rest.attempts)


def look_up(cur: Cursor, mapping: PageMapping, links: Sequence[LinkRow]) -> Held:
    """What Postgres holds for the page's ids and its links' opportunities, in one round trip."""
    ids = [i for i in mapping.ids() if i is not None]
    cur.execute(_LOOK_UP, (_ids(ids), _ids(link.gong_opportunity_id for link in links)))
    digests, remembered = one_row(cur, "the page look-up")
    return Held(dict(digests or {}), refused.memory(remembered), len(set(ids)) == len(ids))


class _Sorted:
    """The page's rows by kind, each decided once, as it is mapped."""

    def __init__(self, held: Held) -> None:
        self.held = held
        self.counts = WriteCounts()
        self.new: list[OpportunityRow] = []
        self.changed: list[OpportunityRow] = []
        self.remembered: list[Issue] = []

    def new_of(self, rows: Iterable[OpportunityRow]) -> Iterator[OpportunityRow]:
        """Sort ``rows`` as they are pulled, yielding the new ones; the others are kept or counted."""
        digests, memory = self.held.digests, self.held.memory
        for mapped in rows:
            row = refused.recall_row(mapped, memory, self.remembered) if memory else mapped
            if row is None:
                continue
            digest = digests.get(row.source_id)
            if digest is None and row.deleted:
                self.counts.not_stored += 1
            elif digest is None:
                self.new.append(row)
                yield row
            elif digest == row.content_hash.hex():
                self.counts.unchanged += 1
            else:
                self.changed.append(row)

    @staticmethod
    def finish(rows: Iterator[OpportunityRow]) -> None:
        """Sort what a failed COPY left unpulled."""
        for _ in rows:
            pass


def _write(cur: Cursor, new: Iterator[OpportunityRow], page: _Sorted, links: Sequence[LinkRow]) -> WriteCounts:
    """COPY the new rows as they are sorted, then merge the changed ones and land the links."""
    first = next(new, None)  # an unchanged page sends no COPY at all
    if first is not None:
        _copy_new(cur, itertools.chain((first,), new))
    counts = _merge_and_link(cur, page.changed, links, [*page.new, *page.changed])
    counts.inserted += len(page.new)
    return counts


def _copy_new(cur: Cursor, rows: Iterator[OpportunityRow]) -> None:
    """COPY rows no stored row has into ``opportunities``, pulling each chunk as the last is sent."""
    cur.execute(_COPY_NEW, stream=encoding.chunks(map(stored.insert_line, rows), CHUNK_ROWS))


class _Part:
    """Writes one part of a sorted page for isolation: every row merged, its links landed."""

    def __init__(self, conn: Connection, deadline: float) -> None:
        self._conn = conn
        self._deadline = deadline

    def __call__(self, items: Sequence[refused.Item]) -> WriteCounts:
        # statement_timeout counts per statement: each attempt gets what is left.
        _bound(self._conn, self._deadline)
        rows = [i for i in items if isinstance(i, OpportunityRow)]
        links = [i for i in items if isinstance(i, LinkRow)]
        return _merge_and_link(self._conn.cursor(), rows, links, rows)


def _merge_and_link(
    cur: Cursor, rows: Sequence[OpportunityRow], links: Sequence[LinkRow], waited_for: Sequence[OpportunityRow]
) -> WriteCounts:
    """Merge ``rows``, store ``links``, and land every link whose two ends now exist.

    ``waited_for`` are the rows written whose ids links read earlier may wait for.
    """
    counts = WriteCounts()
    if rows or links:
        cur.execute(_STAGE)
    if rows:
        cur.execute(_COPY_STAGED, stream=encoding.chunks(map(stored.copy_line, rows)))
        cur.execute(_MERGE)
        counts.inserted, counts.updated, counts.deleted = (int(v) for v in one_row(cur, "the merge"))
        counts.unchanged = len(rows) - counts.inserted - counts.updated - counts.deleted
    if links:
        lines = (encoding.line((link.call_id, link.gong_opportunity_id, link.deleted, link.synced_at)) for link in links)
        cur.execute(_COPY_LINKS, stream=encoding.chunks(lines))
        cur.execute(_REMEMBER_LINKS)
    gone = [r.source_id for r in rows if r.deleted]
    if gone or any(link.deleted for link in links):
        cur.execute(_UNLINK, (_ids(gone),))
        counts.links_removed = cur.rowcount
    ends = [r.source_id for r in waited_for if not r.deleted] + [k.gong_opportunity_id for k in links if not k.deleted]
    if ends:
        cur.execute(_LINK, (_ids(ends),))
        counts.links_added = cur.rowcount
    return counts


def record_rejections(conn: Connection, issues: Sequence[Issue], run_id: str) -> None:
    """Add the page's skipped and degraded rows to ``sync_rejections``."""
    if issues:
        conn.cursor().execute(
            "COPY sync_rejections (run_id, source_id, kind, reason, field_values) FROM STDIN",
            stream=encoding.chunks(
                encoding.line((run_id, _id(i.source_id), i.kind, i.reason, storable.json_text(i.values))) for i in issues
            ),
        )


def _bound(conn: Connection, deadline: float) -> None:
    if deadline != math.inf:
        bound(conn, deadline - time.monotonic())


def _ids(ids: Iterable[str]) -> str:
    # jsonb cannot hold NUL; an id with one is never stored (limits.SOURCE_ID), so never held.
    return json.dumps([i for i in dict.fromkeys(ids) if storable.fits_text(i)])


def _id(source_id: str | None) -> str | None:
    return None if source_id is None else storable.text(source_id)
