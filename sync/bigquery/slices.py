"""Turn a slice of a run's result into one page. Pure: rows in, decisions out.

A result holds, in ``(cursor_stamp, key)`` order, every row after the run's start cursor. A
row's ``cursor_stamp`` is its stamp, or the run's frozen bound when the row is stamped beyond
it (``sync/bigquery/source_sql.py``): future-stamped rows sit at the bound, among the rows stamped
there, and are read page by page like any others, however many there are.

The keyset cursor stays the source of truth; the row offset is only a shortcut to the slice.
So a page:

- skips rows at or before the cursor (a misaligned offset re-reads, never doubles);
- reads the row before its slice too and refuses the slice when that row lies after the
  cursor (an offset too far would skip rows): the caller then evaluates again.

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
        stop: asked after each row; True ends the page early (the time budget is spent).
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
        keyset = shape.keyset(row)
        if keyset > after:
            taken.rows.append(row)
            taken.last = keyset
            if row.get("beyond_cap"):
                taken.future.append(row)
            if row.get("future_total") is not None:
                taken.future_starts = True
                taken.future_total = int(row["future_total"])
        # Stop early rather than overrun the budget: the offset and cursor make a partial page
        # as good as a full one.
        if stop():
            taken.truncated = True
            break
    return taken
