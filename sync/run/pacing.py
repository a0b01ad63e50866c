"""How big the next page is: after a page that timed out, after invocations that died on it, and
after pages that commit. Pure.

A page that keeps hitting ``statement_timeout`` or the time budget would otherwise be retried
unchanged until the push subscription gives up on its message (``max_delivery_attempts``, then
the dead-letter topic) and the sync stops until someone replays it. So:

- a page that **timed out** (the invocation saw it) is retried at half the size;
- a page whose invocation **died** before committing (the platform's timeout, out of memory,
  kill -9: nothing ran to see it) is retried unchanged twice, since one death may be the
  platform's doing, and read at half the size after the :data:`DEATHS_BEFORE_SHRINK`-th. Each
  invocation records its attempt before it reads (``sync_status.page_attempts`` and
  ``page_attempt_size``); the commit clears it;
- both go down to one row. A single row that still times out or kills
  :data:`DEATHS_BEFORE_SHRINK` invocations in a row is refused like a row Postgres refuses
  (kept in ``sync_refused_rows``, reported in ``sync_rejections``), and the run moves on;
- every page that commits doubles the size again until it is back at ``SYNC_PAGE_SIZE``.

The limit lives in ``sync_status.page_size_limit`` (None: no limit), and each run records the
smallest page it used (``sync_runs.smallest_page_size``).
"""

from __future__ import annotations

from dataclasses import dataclass

# One row: a page is halved until the one row that makes it slow is alone, then refused.
MIN_PAGE_SIZE = 1
# Invocations that may die on the same page before it is read smaller.
DEATHS_BEFORE_SHRINK = 3


def page_size(configured: int, limit: int | None) -> int:
    """The size the next page is read at."""
    return configured if limit is None else max(1, min(configured, limit))


def after_timeout(configured: int, limit: int | None) -> int:
    """The limit after a page read at ``page_size(configured, limit)`` timed out: half, to a floor."""
    current = page_size(configured, limit)
    return max(min(MIN_PAGE_SIZE, current), current // 2)


@dataclass(frozen=True)
class Attempt:
    """The next attempt at a page: its number, the limit it reads at, and whether it refuses."""

    number: int
    limit: int | None
    # The page is one row that already ended DEATHS_BEFORE_SHRINK attempts: refuse, do not write.
    refuse: bool = False


def next_attempt(configured: int, limit: int | None, died: int, died_at: int | None) -> Attempt:
    """The attempt after ``died`` invocations died (or timed out at one row) reading ``died_at`` rows."""
    if died < DEATHS_BEFORE_SHRINK or died_at is None:
        return Attempt(died + 1, limit)
    if died_at <= MIN_PAGE_SIZE:
        return Attempt(died + 1, MIN_PAGE_SIZE, refuse=True)
    smaller = max(MIN_PAGE_SIZE, min(page_size(configured, limit), died_at) // 2)
    return Attempt(1, smaller)


def after_commit(configured: int, limit: int | None) -> int | None:
    """The limit after a page committed: doubled, and gone once it reaches the configured size."""
    if limit is None:
        return None
    grown = limit * 2
    return None if grown >= configured else grown


def shrunk(configured: int, limit: int | None) -> int | None:
    """The page size a run records when it had to use a smaller page, else None."""
    size = page_size(configured, limit)
    return size if size < configured else None
