"""Turn a slice of a run's result into one page. Pure: rows in, decisions out.

A result holds, in ``(stamp, key)`` order, the rows after the run's start cursor up to its
frozen upper bound, then the rows stamped beyond the source clock's cap (future-stamped).
Every row stamped after the bound is a future-stamped one: the bound never exceeds the cap.

The keyset cursor stays the source of truth; the row offset is only a shortcut to the slice.
So a page:

- skips bounded rows at or before the cursor (a misaligned offset re-reads, never doubles);
- reads the row before its slice too and refuses the slice when that row is bounded and after
  the cursor (an offset too far would skip rows): the caller then evaluates again;
- never moves the cursor for a future-stamped row: it is written, and read again by later
  runs until real time passes its stamp.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.cursor import Keyset

Row = dict[str, Any]


@dataclass(frozen=True)
class Shape:
    """How a stream's result rows are keyed: the stamp column and the keyset of a row."""

    stamp: str
    keyset: Callable[[Mapping[str, Any]], Keyset]


@dataclass
class Taken:
    """What one page took from a slice."""

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
    previous_future = False
    if with_predecessor:
        before = next(iterator, None)
        if before is not None:
            previous_future = _beyond(before, shape, taken.upper_bound)
            if not previous_future and shape.keyset(before) > after:
                taken.misaligned = True
                return taken
    for row in iterator:
        if starts_result and taken.consumed == 0:
            taken.upper_bound = row.get("run_upper_bound")
            taken.cap = row.get("run_cap")
            taken.future_total = _int(row.get("future_total"))
        taken.consumed += 1
        if _beyond(row, shape, taken.upper_bound):
            taken.future_starts = taken.future_starts or not previous_future
            previous_future = True
            taken.rows.append(row)
            taken.future.append(row)
        elif shape.keyset(row) > after:
            taken.rows.append(row)
            taken.last = shape.keyset(row)
        # Stop early rather than overrun the budget: the offset and cursor make a partial page
        # as good as a full one.
        if stop():
            taken.truncated = True
            break
    return taken


def _beyond(row: Mapping[str, Any], shape: Shape, upper_bound: dt.datetime | None) -> bool:
    stamp = row.get(shape.stamp)
    return upper_bound is not None and stamp is not None and stamp > upper_bound


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None
