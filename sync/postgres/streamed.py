"""A page Postgres holds none of, copied into ``opportunities`` while it is still being mapped.

On a first load (the initial sync, a full resync into an empty table, a page of opportunities
created since the last run) the write is mostly ``COPY`` into the indexed table, and that is the
server's work, on the server's core. :func:`~sync.postgres.sink.write_page` takes rows mapped
beforehand, so Python maps the whole page while Postgres waits, then Postgres stores it while
Python waits. Here the page's ids, as the source holds them, are looked up before any row is
mapped; when Postgres holds none of them, pg8000 pulls the rows through the mapping into the
``COPY`` stream a chunk at a time, and the server stores one chunk while Python maps the next.

Every other page takes the ordinary path, and so does this one whenever the shortcut cannot be
exact. Nothing is left written here when:

- Postgres holds one of the ids (an update, an unchanged re-read, a soft delete);
- an id occurs twice in the page (the later row wins, which a stream cannot take back);
- a refusal is remembered (``sync_refused_rows``): rows must be recalled before anything is sent;
- Postgres refuses the ``COPY``: a value it will not hold (isolation finds the row) or an id
  another writer stored since the look-up (the merge takes it). The copy is rolled back to its
  savepoint first, so the ordinary path starts from nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sync.core.errors import data_error
from sync.postgres.db import Connection, Cursor
from sync.postgres.sink import COPY_NEW, PageWrite, WriteCounts, record_rejections, write_page
from sync.postgres.transaction import bound
from sync.rows import encoding, storable, stored
from sync.rows.stored import OpportunityRow
from sync.rows.transform import Issue, LinkRow, PageMapping

# Rows per COPY message (~60 KB). The first chunk's mapping and the last chunk's storing do not
# overlap, so smaller is better until a message's own cost shows: in two interleaved A/B runs
# 50 rows beat 200 by 7 % and 8 %; 400 and 500 were slower still (bench/README.md, third round).
CHUNK_ROWS = 50

_KEY = stored.KEY.name
# One round trip answers for the page: the digest stored under each of its ids, whether any
# refusal is remembered, and whether links read earlier wait for one of its ids. The ids travel
# as one JSON array and the digests come back as one JSON object: cheaper than staging the ids
# with COPY or returning a row per id, and exact for any string jsonb holds.
_LOOK_UP = f"""
WITH page AS (SELECT jsonb_array_elements_text(%s::jsonb) AS id),
held AS (SELECT json_object_agg(cur.{_KEY}, encode(cur.{stored.HASH.name}, 'hex')) AS digests
         FROM page JOIN opportunities cur ON cur.{_KEY} = page.id)
SELECT held.digests,
       EXISTS (SELECT 1 FROM sync_refused_rows),
       -- Only a page Postgres holds none of is copied here, and only then do waiting links matter.
       held.digests IS NULL AND EXISTS (SELECT 1 FROM page JOIN call_links l ON l.gong_opportunity_id = page.id)
FROM held
"""
# The link step of sync/postgres/sink.py for these ids: a link read on an earlier page lands
# once its opportunity exists.
_LINK_WAITING = f"""
INSERT INTO call_opportunities (call_id, opportunity_id)
SELECT l.call_id, o.id
FROM call_links l
JOIN opportunities o ON o.{_KEY} = l.gong_opportunity_id AND o.deleted_at IS NULL
WHERE l.gong_opportunity_id IN (SELECT jsonb_array_elements_text(%s::jsonb))
ON CONFLICT (call_id, opportunity_id) DO NOTHING
"""


@dataclass(frozen=True)
class Held:
    """What Postgres holds for a page's ids, before any row is mapped."""

    ids: str  # the page's ids as the JSON array that was looked up
    digests: dict[str, str]  # stored content digest (hex) by id, for the ids stored
    refusals: bool  # a refusal is remembered: rows must be recalled before they are sent
    links_waiting: bool  # links read earlier wait for one of these ids
    unique: bool  # no id occurs twice in the page


def write_mapped(
    conn: Connection,
    mapping: PageMapping,
    links: Sequence[LinkRow],
    issues: Sequence[Issue],
    run_id: str,
    *,
    deadline: float = math.inf,
) -> PageWrite:
    """:func:`~sync.postgres.sink.write_page` for a page given as its mapping, in the caller's transaction.

    ``issues`` are the page's other issues (its links', its future stamps); the mapping's own
    are recorded ahead of them, as ``write_page`` records them when given the mapped page. Rows
    ``write_page`` would not write (stored with the same digest, or deleted and never stored)
    are counted as it would count them without being sent, unless refusals are remembered
    (recalling a row records it).
    """
    held = look_up(conn, mapping)
    copied = copy_unheld(conn, mapping, held, deadline) if held is not None else None
    result = mapping.result()
    recorded = [*result.issues, *issues]
    counts = WriteCounts() if copied is None else copied
    rows: list[OpportunityRow] = []  # a copied page has sent its rows already
    if copied is None and held is not None and not held.refusals:
        rows, counts.unchanged, counts.not_stored = _to_send(result.rows, held.digests)
    elif copied is None:
        rows = result.rows
    if not rows and not links:
        record_rejections(conn, recorded, run_id)
        return PageWrite(counts)
    written = write_page(conn, rows, links, recorded, run_id, deadline=deadline)
    written.counts = written.counts + counts
    return written


def _to_send(rows: Sequence[OpportunityRow], digests: dict[str, str]) -> tuple[list[OpportunityRow], int, int]:
    """The rows ``write_page`` has to see, and how many it would count unchanged and not stored.

    A row stored with its own digest is unchanged; a row deleted in the source under an id
    Postgres does not hold was never stored. Neither would be written.
    """
    send: list[OpportunityRow] = []
    unchanged = not_stored = 0
    for row in rows:
        digest = digests.get(row.source_id)
        if digest is None and row.deleted:
            not_stored += 1
        elif digest is not None and digest == row.content_hash.hex():
            unchanged += 1
        else:
            send.append(row)
    return send, unchanged, not_stored


def look_up(conn: Connection, mapping: PageMapping) -> Held | None:
    """What Postgres holds for the page's ids, in one round trip; None for a page without ids."""
    present = [i for i in mapping.ids() if i is not None]
    if not present:
        return None
    # jsonb cannot hold NUL; an id with one is never stored (limits.SOURCE_ID), so never held.
    ids = json.dumps([i for i in present if storable.fits_text(i)])
    cur = conn.cursor()
    cur.execute(_LOOK_UP, (ids,))
    found = cur.fetchone()
    if found is None:  # a SELECT without FROM always returns its row; this is a driver fault
        msg = "expected one result row, got none"
        raise RuntimeError(msg)
    digests, refusals, waiting = found
    return Held(ids, dict(digests or {}), bool(refusals), bool(waiting), len(set(present)) == len(present))


def copy_unheld(conn: Connection, mapping: PageMapping, held: Held, deadline: float = math.inf) -> WriteCounts | None:
    """Copy the page's live rows into ``opportunities`` as they are mapped, when Postgres holds none of its ids.

    Returns the counts (rows inserted, deleted rows never stored, links that landed), or None
    when the page must take the ordinary path; then nothing is left written, though rows may
    have been mapped.
    """
    if held.digests or held.refusals or not held.unique:
        return None
    if deadline != math.inf:
        bound(conn, deadline - time.monotonic())
    return _copy(conn.cursor(), mapping, held.ids if held.links_waiting else None)


def _copy(cur: Cursor, mapping: PageMapping, waiting: str | None) -> WriteCounts | None:
    """COPY under a savepoint; then land the links waiting for ``waiting`` (the page's ids as JSON)."""
    counts = WriteCounts()
    cur.execute("SAVEPOINT copy_unheld")
    try:
        cur.execute(COPY_NEW, stream=encoding.chunks(_live_lines(mapping.rows(), counts), CHUNK_ROWS))
        if waiting is not None:
            cur.execute(_LINK_WAITING, (waiting,))
            counts.links_added = cur.rowcount
    except Exception as err:
        if data_error(err) is None:
            raise
        cur.execute("ROLLBACK TO SAVEPOINT copy_unheld")
        cur.execute("RELEASE SAVEPOINT copy_unheld")
        return None
    cur.execute("RELEASE SAVEPOINT copy_unheld")
    return counts


def _live_lines(rows: Iterator[OpportunityRow], counts: WriteCounts) -> Iterator[str]:
    """COPY lines of the live rows; a row deleted in the source and never stored is only counted."""
    for row in rows:
        if row.deleted:
            counts.not_stored += 1
        else:
            counts.inserted += 1
            yield stored.insert_line(row)
