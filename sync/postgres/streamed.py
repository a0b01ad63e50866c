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

import math
import time
from collections.abc import Iterator, Sequence

from sync.core.errors import data_error
from sync.postgres import refused
from sync.postgres.db import Connection, Cursor
from sync.postgres.sink import COPY_NEW, LINK, STAGE_DDL, PageWrite, WriteCounts, write_page
from sync.postgres.transaction import bound
from sync.rows import encoding, stored
from sync.rows.stored import OpportunityRow
from sync.rows.transform import Issue, LinkRow, PageMapping

# Rows per COPY message. Smaller chunks overlap mapping and storing more closely, at one more
# message each; 200 rows (~150 KB) measured as fast as 50 and clearly faster than 1,000.
CHUNK_ROWS = 200

_COPY_IDS = f"COPY stage_keys ({stored.KEY.name}) FROM STDIN"
_ANY_HELD = f"SELECT EXISTS (SELECT 1 FROM stage_keys k JOIN opportunities cur ON cur.{stored.KEY.name} = k.{stored.KEY.name})"


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
    are recorded ahead of them, as ``write_page`` records them when given the mapped page.
    """
    copied = copy_unheld(conn, mapping, deadline)
    result = mapping.result()
    rows = [] if copied is not None else result.rows
    written = write_page(conn, rows, links, [*result.issues, *issues], run_id, deadline=deadline)
    if copied is not None:
        written.counts = written.counts + copied
    return written


def copy_unheld(conn: Connection, mapping: PageMapping, deadline: float = math.inf) -> WriteCounts | None:
    """Copy the page's live rows into ``opportunities`` as they are mapped, when Postgres holds none of its ids.

    Returns the counts (rows inserted, deleted rows never stored, links that landed), or None
    when the page must take the ordinary path; then nothing is left written, though rows may
    have been mapped.
    """
    ids = [i for i in mapping.ids() if i is not None]
    if not ids or len(set(ids)) != len(ids) or refused.remembers_any(conn):
        return None
    cur = conn.cursor()
    cur.execute(STAGE_DDL)
    # The ids also serve the link step below; the ordinary path stages its own.
    cur.execute("DELETE FROM stage_keys")
    cur.execute(_COPY_IDS, stream=encoding.chunks(f"{encoding.text(i)}\n" for i in ids))
    cur.execute(_ANY_HELD)
    held = cur.fetchone()
    if held is None or held[0]:
        cur.execute("DELETE FROM stage_keys")
        return None
    if deadline != math.inf:
        bound(conn, deadline - time.monotonic())
    return _copy(cur, mapping)


def _copy(cur: Cursor, mapping: PageMapping) -> WriteCounts | None:
    counts = WriteCounts()
    cur.execute("SAVEPOINT copy_unheld")
    try:
        cur.execute(COPY_NEW, stream=encoding.chunks(_live_lines(mapping.pull(), counts), CHUNK_ROWS))
        # Links read on earlier pages land now that their opportunities exist.
        cur.execute(LINK)
        counts.links_added = cur.rowcount
    except Exception as err:
        if data_error(err) is None:
            raise
        cur.execute("ROLLBACK TO SAVEPOINT copy_unheld")
        cur.execute("RELEASE SAVEPOINT copy_unheld")
        cur.execute("DELETE FROM stage_keys")
        return None
    cur.execute("RELEASE SAVEPOINT copy_unheld")
    cur.execute("DELETE FROM stage_keys")
    return counts


def _live_lines(rows: Iterator[OpportunityRow], counts: WriteCounts) -> Iterator[str]:
    """COPY lines of the live rows; a row deleted in the source and never stored is only counted."""
    for row in rows:
        if row.deleted:
            counts.not_stored += 1
        else:
            counts.inserted += 1
            yield stored.insert_line(row)
