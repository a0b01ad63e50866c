"""How big the next page is. One rule, pure: failed attempts count against a page, and enough of
them halve it, down to one row, which is then refused.

A page that keeps hitting ``statement_timeout``, the time budget or the platform's timeout would
otherwise be retried unchanged until the push subscription gives up on its message
(``max_delivery_attempts``, then the dead-letter topic) and the sync stops until someone replays
it. So every invocation records its attempt before it reads (``sync_status.page_attempts`` and
``page_attempt_size``), as if it were going to die; the commit clears the record. An attempt
that fails counts against the page with a :func:`weight` that says how sure its ending makes us
that the page's size is to blame:

- **died** (the platform's timeout, out of memory, kill -9: nothing of ours ran to see it): 1,
  since one death may be the platform's doing. The record stays as written;
- **timed out** while the invocation saw it: :data:`STRIKES_TO_SHRINK`, proof enough, since the
  invocation measured it. At one row, though, halving can do nothing more and the next step is
  refusing the row: there only the row's own write counts (1), and a BigQuery read that timed out
  counts 0, since it says nothing about the row;
- **anything else** (a connection lost, a lock timeout, a permanent error): 0.

:func:`next_attempt` is the only place a page shrinks or is refused: once the weights reach
:data:`STRIKES_TO_SHRINK` the page is read at half the size they were earned at, and a page of
one row is refused like a row Postgres refuses (kept in ``sync_refused_rows``, reported in
``sync_rejections``) and the run moves on. Every page that commits doubles the size again until
it is back at ``SYNC_PAGE_SIZE``.

The limit lives in ``sync_status.page_size_limit`` (None: no limit), and each run records the
smallest page it used (``sync_runs.smallest_page_size``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.core.errors import is_page_timeout, is_write_timeout

# One row: a page is halved until the one row that makes it slow is alone, then refused.
MIN_PAGE_SIZE = 1
# What the failed attempts at a page must weigh before it is read smaller (or, at one row, refused).
STRIKES_TO_SHRINK = 3


def page_size(configured: int, limit: int | None) -> int:
    """The size the next page is read at."""
    return configured if limit is None else max(1, min(configured, limit))


def weight(failure: BaseException | None, size: int) -> int:
    """How much an attempt at a page of ``size`` rows that ended in ``failure`` counts against it.

    ``failure`` is None when the invocation is being torn down (``SystemExit``, a signal): that
    counts as a death.
    """
    if failure is None:
        return 1
    if not is_page_timeout(failure):
        return 0
    if size > MIN_PAGE_SIZE:
        return STRIKES_TO_SHRINK
    return 1 if is_write_timeout(failure) else 0


@dataclass(frozen=True)
class Attempt:
    """The next attempt at a page: its number, the limit it reads at, and whether it refuses."""

    number: int
    limit: int | None
    # The page is one row whose attempts already weigh STRIKES_TO_SHRINK: refuse, do not write.
    refuse: bool = False


def next_attempt(configured: int, limit: int | None, strikes: int, struck_at: int | None) -> Attempt:
    """The attempt after failed attempts weighing ``strikes`` at pages of ``struck_at`` rows."""
    if strikes < STRIKES_TO_SHRINK or struck_at is None:
        return Attempt(strikes + 1, limit)
    if struck_at <= MIN_PAGE_SIZE:
        return Attempt(strikes + 1, MIN_PAGE_SIZE, refuse=True)
    smaller = max(MIN_PAGE_SIZE, min(page_size(configured, limit), struck_at) // 2)
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
