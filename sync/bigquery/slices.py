"""Turn a slice of a run's result into one page. Pure: rows in, decisions out.

A result holds, in ``(cursor_stamp, key)`` order, every row after the run's start cursor. A
row's ``cursor_stamp`` is its stamp, or the run's frozen bound when the row is stamped beyond
it (``sync/bigquery/source_sql.py``): future-stamped rows sit at the bound, among the rows stamped
there, and are read page by page like any others, however many there are.

The keyset cursor stays the source of truth; the row offset is only a shortcut to the slice.
So a page:

- skips rows at or before the cursor (a misaligned offset re-reads, never doubles);
- reads the row before its slice too and refuses the slice when that row lies after the
  cursor (an offset too far would skip rows): the caller then evaluates again;
- ends only after a row whose key Postgres can hold (``sync/rows/storable.py``). A row whose id
  holds NUL is skipped by the transform, but were it a page's last row, its key would become the
  stored cursor and fail the page's commit, on every retry. So a page that would end on such rows
  takes them and goes on to the next row that can be the cursor, beyond its row limit if need be
  (the caller reads more of the result for it), or to the end of the result. The rows it took
  along are written (skipped and recorded) with the page; the cursor and the offset both end
  after the row that can be the cursor, so the next page starts right behind it, and a run of
  such rows never stalls the stream, even at one row a page.

The cursor never passes the bound, so neither does the watermark: later runs read the
future-stamped rows again (the content hash keeps that write-free) until real time passes
their stamp.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.bigquery.cursor import Keyset
from sync.rows import storable

Row = dict[str, Any]


@dataclass(frozen=True)
class Shape:
    """How a stream's result rows are keyed: a row's place in the run's order."""

    keyset: Callable[[Mapping[str, Any]], Keyset]


@dataclass
class Taken:
    """What one page took from a slice.

    ``future`` are the rows among ``rows`` stamped beyond the source clock's cap;
    ``future_starts`` says the first of the result's future-stamped rows is on this page, and
    ``future_total`` is then how many the result holds.
    """

    rows: list[Row] = field(default_factory=list)
    future: list[Row] = field(default_factory=list)
    last: Keyset | None = None
    consumed: int = 0
    truncated: bool = False
    # The slice ran out before the page was full: the result holds no more rows.
    ended: bool = False
    misaligned: bool = False
    future_starts: bool = False
    upper_bound: dt.datetime | None = None
    cap: dt.datetime | None = None
    future_total: int | None = None


def take(
    rows: Iterable[Row],
    shape: Shape,
    *,
    after: Keyset,
    upper_bound: dt.datetime | None,
    starts_result: bool,
    with_predecessor: bool,
    limit: int,
    stop: Callable[[], bool],
) -> Taken:
    """Take a page from ``rows``, a slice of the result.

    Args:
        rows: the slice, in result order; its first row is the predecessor when
            ``with_predecessor``.
        shape: the stream's keying.
        after: the stream's committed cursor.
        upper_bound: the run's frozen bound; ignored when ``starts_result``, because the first
            row of a result carries the bound that result was evaluated with.
        starts_result: the slice begins at the result's first row.
        with_predecessor: the slice begins one row before the page's first row.
        limit: how many rows (predecessor aside) the page consumes, unless it must go on to a
            row that can be the cursor; ``rows`` yields those further rows on demand.
        stop: asked after each row that could end the page; True ends it early (the time
            budget is spent).
    """
    taken = Taken(upper_bound=upper_bound)
    iterator = iter(rows)
    if with_predecessor:
        before = next(iterator, None)
        if before is not None and shape.keyset(before) > after:
            taken.misaligned = True
            return taken
    for row in iterator:
        if starts_result and taken.consumed == 0:
            taken.upper_bound = row.get("run_upper_bound")
            taken.cap = row.get("run_cap")
        taken.consumed += 1
        if not _take_row(taken, row, shape.keyset(row), after):
            continue  # the page cannot end on this row: its key cannot be the cursor
        # Stop early rather than overrun the budget: the offset and cursor make a partial page
        # as good as a full one.
        if stop():
            taken.truncated = True
            break
        if taken.consumed >= limit:
            break
    else:
        taken.ended = True
    return taken


def _take_row(taken: Taken, row: Row, keyset: Keyset, after: Keyset) -> bool:
    """Take ``row`` if it lies after the cursor; whether the page may end after it."""
    if not keyset > after:
        return True
    taken.rows.append(row)
    if row.get("beyond_cap"):
        taken.future.append(row)
    if row.get("future_total") is not None:
        taken.future_starts = True
        taken.future_total = int(row["future_total"])
    if not storable.fits_text(keyset.key):
        return False
    taken.last = keyset
    return True
