"""Keyset cursor and watermark arithmetic, pure and exhaustively testable.

A page is the rows with ``(stamp, key) > after`` and ``stamp <= upper_bound``, ordered by
``(stamp, key)``. The range is open at the start and closed at the end, so consecutive pages
neither skip nor repeat a row, even when thousands of rows share one timestamp.

A run freezes ``upper_bound`` on its first page and carries it to the last, so it terminates
while rows keep landing; those are the next run's. The bound is capped at the source's clock
plus a skew allowance, so a row stamped in the future can never become one. The watermark only
ever moves to a stamp that was read and committed, and never backwards; one found beyond the
source's clock when a run starts is discarded instead (``sync/bigquery/probe.py``).

A run reads two streams (opportunities and call links); :class:`Stream` is where one of them
stands: its cursor, its frozen bound and whether it is exhausted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sync.bigquery.results import ResultPosition

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, order=True)
class Keyset:
    """A position in ``ORDER BY stamp, key``: every row after it is still to read."""

    stamp: dt.datetime
    key: str

    @classmethod
    def start(cls) -> Keyset:
        """Before every row (ids are non-empty strings, so ``""`` sorts first)."""
        return cls(EPOCH, "")


def run_start(watermark: dt.datetime | None, lookback: dt.timedelta, *, full: bool) -> Keyset:
    """Where a new run begins reading.

    An incremental run re-reads ``lookback`` before the watermark: Fivetran commits rows
    minutes after stamping them, so a row can become visible with a stamp we already passed.
    Re-read rows whose content is unchanged cost no writes.
    """
    if full or watermark is None:
        return Keyset.start()
    return Keyset(max(EPOCH, watermark - lookback), "")


def advance(current: Keyset, last_row: Keyset | None) -> Keyset:
    """The cursor after committing a page whose last row (in order) is ``last_row``."""
    if last_row is None:
        return current
    if last_row <= current:
        msg = f"cursor would move backwards: {current} -> {last_row}"
        raise ValueError(msg)
    return last_row


def next_watermark(watermark: dt.datetime | None, read_up_to: dt.datetime | None) -> dt.datetime | None:
    """Watermark after a completed run: the highest stamp committed, never backwards."""
    if read_up_to is None:
        return watermark
    if watermark is None:
        return read_up_to
    return max(watermark, read_up_to)


def page_is_last(rows_returned: int, limit: int, *, truncated: bool) -> bool:
    """Whether the range is exhausted after a page.

    A full page may hide more rows; a short page that was not cut by the time budget proves
    the range is empty beyond it.
    """
    return not truncated and rows_returned < limit


@dataclass(frozen=True)
class Stream:
    """Where one source stream stands within a run.

    ``result`` is where its next page starts in the run's BigQuery result (a shortcut: the
    keyset ``cursor`` stays the truth); None before the run's first evaluation and once done.
    """

    cursor: Keyset
    upper_bound: dt.datetime | None = None
    done: bool = False
    result: ResultPosition | None = None

    @classmethod
    def begin(cls, watermark: dt.datetime | None, lookback: dt.timedelta, *, full: bool) -> Stream:
        """A new run's stream: from :func:`run_start`, its bound not frozen yet."""
        return cls(run_start(watermark, lookback, full=full))

    def after_page(
        self, last_row: Keyset | None, upper_bound: dt.datetime | None, *, exhausted: bool, result: ResultPosition | None
    ) -> Stream:
        """The stream after a page whose last row within the bound is ``last_row``."""
        if self.done:
            return self
        return Stream(advance(self.cursor, last_row), upper_bound, exhausted, None if exhausted else result)

    def finished(self) -> Stream:
        """Nothing (more) to read: the source has no such table, or the run is past it."""
        return Stream(self.cursor, self.upper_bound, done=True)

    @property
    def read_up_to(self) -> dt.datetime | None:
        """The stamp of the last row read, None before the first (a start keyset has no key)."""
        return self.cursor.stamp if self.cursor.key else None
