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

A page is bounded by its rows' weight too (:class:`Budget`, ``sync/core/memory.py``): it ends once
the rows taken reach what the function's memory allows, like a page the time budget cuts short.
The offset and the cursor make such a page as good as a full one; it holds at least one row.

The cursor never passes the bound, so neither does the watermark: later runs read the
future-stamped rows again (the content hash keeps that write-free) until real time passes
their stamp.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.bigquery.cursor import Keyset
from sync.core import memory
from sync.rows import storable

Row = dict[str, Any]


@dataclass(frozen=True)
class Shape:
    """How a stream's result rows are keyed: a row's place in the run's order."""

    keyset: Callable[[Mapping[str, Any]], Keyset]


# Rows read at first when nothing is known of their weight (a new process): a few heavy rows
# fit any budget, and the next read is sized from these.
_UNKNOWN_WEIGHT_ROWS = 100


def text_chars(row: Row) -> int:
    """The text a row carries: what makes one row weigh more than another."""
    return sum(len(value) for value in row.values() if isinstance(value, str))


@dataclass
class Budget:
    """What a page's rows may cost at peak (MiB, :func:`sync.core.memory.page_budget_mib`), and what those taken cost.

    ``expected_row_mib`` is a row's cost before any is taken (the stream's previous page), None
    when unknown; the reader sizes its reads of the result by :meth:`rows_left`, so it does not
    fetch much more than the page can hold.
    """

    mib: float
    expected_row_mib: float | None = None
    spent: float = 0.0
    rows: int = 0

    def add(self, row: Row) -> None:
        self.spent += memory.row_mib(text_chars(row))
        self.rows += 1

    @property
    def full(self) -> bool:
        return self.spent >= self.mib

    @property
    def row_mib(self) -> float | None:
        """The average cost of the rows taken, else the expected one."""
        return self.spent / self.rows if self.rows else self.expected_row_mib

    def rows_left(self) -> int:
        """How many more rows of :attr:`row_mib` fit; at least one."""
        per_row = self.row_mib
        if per_row is None:
            return _UNKNOWN_WEIGHT_ROWS
        return max(1, math.floor((self.mib - self.spent) / per_row))


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
    # The rows reached the page's memory budget before its row limit.
    full: bool = False
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
    budget: Budget | None = None,
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
        budget: the page's memory budget, if any; each row taken is added to it, and the page
            ends after the row that fills it.
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
        if not _take_row(taken, row, shape.keyset(row), after, budget):
            continue  # the page cannot end on this row: its key cannot be the cursor
        # Stop early rather than overrun the budget: the offset and cursor make a partial page
        # as good as a full one.
        if stop():
            taken.truncated = True
            break
        if taken.consumed >= limit:
            break
        if budget is not None and budget.full:
            taken.full = True
            break
    else:
        taken.ended = True
    return taken


def _take_row(taken: Taken, row: Row, keyset: Keyset, after: Keyset, budget: Budget | None) -> bool:
    """Take ``row`` if it lies after the cursor; whether the page may end after it."""
    if not keyset > after:
        return True
    taken.rows.append(row)
    if budget is not None:
        budget.add(row)
    if row.get("beyond_cap"):
        taken.future.append(row)
    if row.get("future_total") is not None:
        taken.future_starts = True
        taken.future_total = int(row["future_total"])
    if not storable.fits_text(keyset.key):
        return False
    taken.last = keyset
    return True
