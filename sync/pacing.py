"""How big the next page is, after a page that timed out and after pages that commit. Pure.

A page that keeps hitting ``statement_timeout`` or the time budget would otherwise be retried
unchanged by Pub/Sub for 24 hours. So a timed-out page is retried at half the size, down to
:data:`MIN_PAGE_SIZE`; every page that commits doubles the size again until it is back at
``SYNC_PAGE_SIZE``. The limit lives in ``sync_status.page_size_limit`` (None: no limit), and
each run records the smallest page it used (``sync_runs.smallest_page_size``).
"""

from __future__ import annotations

# Small enough that one slow row cannot starve a page, large enough that a run still moves.
MIN_PAGE_SIZE = 10


def page_size(configured: int, limit: int | None) -> int:
    """The size the next page is read at."""
    return configured if limit is None else max(1, min(configured, limit))


def after_timeout(configured: int, limit: int | None) -> int:
    """The limit after a page read at ``page_size(configured, limit)`` timed out: half, to a floor."""
    current = page_size(configured, limit)
    return max(min(MIN_PAGE_SIZE, current), current // 2)


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
